//! Cases for sessions, messages and the activity feed.

use std::sync::Arc;

use chrono::TimeDelta;
use uuid::Uuid;

use crate::ids::*;
use crate::model::*;
use crate::store::ConflictKind;
use crate::store::{Appended, DeliveryUpdate, Page, Store, StoreError};
use crate::testing::fixtures::{self, ChatWorld, now};

pub async fn session_lifecycle(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let session = world.session.clone();
    assert_eq!(store.get_session(session.id).await.unwrap(), Some(session.clone()));
    assert_eq!(store.get_session(SessionId::new()).await.unwrap(), None);
    assert!(session.session_key.starts_with(&format!("agent:{}:mc-", world.agent.agent_key)));

    let orphan = fixtures::session(UserId::new(), &world.agent);
    let err = store.create_session(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let ghost_agent = fixtures::agent(world.gateway.id);
    let err = store.create_session(&fixtures::session(world.user.id, &ghost_agent)).await;
    assert!(matches!(err.unwrap_err(), StoreError::NotFound(_)));
    let err = store.create_session(&session).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "same id twice: {err:?}");

    let at = now() + TimeDelta::seconds(3);
    let closed = store.set_session_status(session.id, SessionStatus::Closed, at).await.unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    assert_eq!(closed.updated_at, at);
    assert_eq!(store.get_session(session.id).await.unwrap(), Some(closed));
    let err = store.set_session_status(SessionId::new(), SessionStatus::Closed, at).await;
    assert!(matches!(err.unwrap_err(), StoreError::NotFound(_)));
}

pub async fn session_list_pages_newest_first(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let mut ids = vec![world.session.id];
    for _ in 0..4 {
        let s = fixtures::session(world.user.id, &world.agent);
        store.create_session(&s).await.unwrap();
        ids.push(s.id);
    }
    // Another user's session is not listed.
    let other = fixtures::user(world.org.id);
    store.create_user(&other).await.unwrap();
    store.create_session(&fixtures::session(other.id, &world.agent)).await.unwrap();
    ids.reverse();

    let first = store.list_user_sessions(world.user.id, Page::first(2)).await.unwrap();
    let second = store
        .list_user_sessions(world.user.id, Page::after(first.next_cursor.unwrap(), 2))
        .await
        .unwrap();
    let third = store
        .list_user_sessions(world.user.id, Page::after(second.next_cursor.unwrap(), 2))
        .await
        .unwrap();
    assert_eq!(third.next_cursor, None);
    let listed: Vec<_> =
        [first.items, second.items, third.items].concat().iter().map(|s| s.id).collect();
    assert_eq!(listed, ids);
}

pub async fn append_assigns_sequential_seqs(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    let mut stored = vec![];
    for (i, role) in [MessageRole::User, MessageRole::Agent, MessageRole::System].iter().enumerate()
    {
        let mut msg = fixtures::user_message(sid, &format!("message {i} — ünïcödé ✓"));
        msg.role = *role;
        if *role != MessageRole::User {
            msg.client_msg_id = None;
            msg.run_id = Some(format!("run-{i}"));
        }
        let Appended::New(m) = store.append_message(&msg).await.unwrap() else {
            panic!("expected a new message");
        };
        assert_eq!(m.seq, i as u64 + 1);
        assert_eq!(
            (m.id, m.session_id, m.role, &m.content, m.client_msg_id, &m.run_id, m.created_at),
            (msg.id, sid, msg.role, &msg.content, msg.client_msg_id, &msg.run_id, msg.created_at)
        );
        stored.push(m);
    }
    let session = store.get_session(sid).await.unwrap().unwrap();
    assert_eq!(session.last_seq, 3);
    assert_eq!(session.last_message_at, Some(stored[2].created_at));
    let page = store.list_messages(sid, None, 10).await.unwrap();
    assert_eq!(page.messages, stored);
    assert!(!page.has_more);

    // Another session of the same user counts from 1.
    let other = fixtures::session(world.user.id, &world.agent);
    store.create_session(&other).await.unwrap();
    let m = store.append_message(&fixtures::user_message(other.id, "x")).await.unwrap();
    assert_eq!(m.message().seq, 1);

    let err = store.append_message(&fixtures::user_message(SessionId::new(), "x")).await;
    assert!(matches!(err.unwrap_err(), StoreError::NotFound(_)));
}

pub async fn append_concurrent_50_is_gapless(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.spawn(async move {
            let msg = fixtures::user_message(sid, &format!("concurrent {i}"));
            match store.append_message(&msg).await.unwrap() {
                Appended::New(m) => m,
                Appended::Existing(m) => panic!("distinct client ids, got existing {m:?}"),
            }
        });
    }
    let mut seqs = vec![];
    while let Some(result) = tasks.join_next().await {
        seqs.push(result.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>(), "seq 1..50, no gap, no duplicate");
    assert_eq!(store.get_session(sid).await.unwrap().unwrap().last_seq, 50);
    let stored = store.messages_after(sid, 0, 100).await.unwrap();
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), seqs);
}

pub async fn append_is_idempotent_by_client_msg_id(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    let first = fixtures::user_message(sid, "hello");
    let Appended::New(original) = store.append_message(&first).await.unwrap() else {
        panic!("first append is new");
    };
    // A retry: same client id, new message id, even different content.
    let mut retry = fixtures::user_message(sid, "hello (retried)");
    retry.client_msg_id = first.client_msg_id;
    match store.append_message(&retry).await.unwrap() {
        Appended::Existing(m) => assert_eq!(m, original),
        Appended::New(m) => panic!("retry stored a duplicate: {m:?}"),
    }
    let session = store.get_session(sid).await.unwrap().unwrap();
    assert_eq!(session.last_seq, 1, "a retry does not consume a seq");
    // The next distinct message gets seq 2, with no gap.
    let next = store.append_message(&fixtures::user_message(sid, "next")).await.unwrap();
    assert_eq!(next.message().seq, 2);
    // The same client id in another session is a different message.
    let other = fixtures::session(world.user.id, &world.agent);
    store.create_session(&other).await.unwrap();
    let mut elsewhere = fixtures::user_message(other.id, "hello");
    elsewhere.client_msg_id = first.client_msg_id;
    assert!(matches!(store.append_message(&elsewhere).await.unwrap(), Appended::New(_)));
    // Messages without a client id are never deduplicated.
    for _ in 0..2 {
        let mut reply = fixtures::user_message(sid, "reply");
        reply.client_msg_id = None;
        assert!(matches!(store.append_message(&reply).await.unwrap(), Appended::New(_)));
    }
    assert_eq!(store.get_session(sid).await.unwrap().unwrap().last_seq, 4);

    // A client id is found across the user's sessions, and only the user's.
    let client_id = first.client_msg_id.unwrap();
    let found = store.find_user_message(world.user.id, client_id).await.unwrap().unwrap();
    assert_eq!(found, original, "the oldest message with that client id");
    assert_eq!(store.find_user_message(UserId::new(), client_id).await.unwrap(), None);
    assert_eq!(store.find_user_message(world.user.id, Uuid::now_v7()).await.unwrap(), None);
}

pub async fn append_concurrent_duplicates_store_one(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    let client_id = Uuid::now_v7();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut msg = fixtures::user_message(sid, &format!("attempt {i}"));
            msg.client_msg_id = Some(client_id);
            store.append_message(&msg).await.unwrap()
        });
    }
    let mut new = vec![];
    let mut existing = vec![];
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Appended::New(m) => new.push(m),
            Appended::Existing(m) => existing.push(m),
        }
    }
    assert_eq!(new.len(), 1, "exactly one of ten concurrent retries is stored");
    assert!(existing.iter().all(|m| *m == new[0]));
    assert_eq!(store.get_session(sid).await.unwrap().unwrap().last_seq, 1);
}

pub async fn history_pages_backwards_and_resume_forwards(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    for i in 1..=25 {
        store.append_message(&fixtures::user_message(sid, &format!("m{i}"))).await.unwrap();
    }
    let seqs = |messages: &[Message]| messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let newest = store.list_messages(sid, None, 10).await.unwrap();
    assert_eq!(seqs(&newest.messages), (16..=25).collect::<Vec<_>>());
    assert!(newest.has_more);
    assert_eq!(newest.messages[0].content, "m16");
    let older = store.list_messages(sid, Some(16), 10).await.unwrap();
    assert_eq!(seqs(&older.messages), (6..=15).collect::<Vec<_>>());
    assert!(older.has_more);
    let oldest = store.list_messages(sid, Some(6), 10).await.unwrap();
    assert_eq!(seqs(&oldest.messages), (1..=5).collect::<Vec<_>>());
    assert!(!oldest.has_more);
    let exact = store.list_messages(sid, Some(11), 10).await.unwrap();
    assert_eq!(seqs(&exact.messages), (1..=10).collect::<Vec<_>>());
    assert!(!exact.has_more);
    assert!(store.list_messages(sid, Some(1), 10).await.unwrap().messages.is_empty());
    let clamped = store.list_messages(sid, None, 0).await.unwrap();
    assert_eq!(seqs(&clamped.messages), vec![25]);

    assert_eq!(seqs(&store.messages_after(sid, 20, 100).await.unwrap()), vec![21, 22, 23, 24, 25]);
    assert_eq!(seqs(&store.messages_after(sid, 0, 3).await.unwrap()), vec![1, 2, 3]);
    assert!(store.messages_after(sid, 25, 10).await.unwrap().is_empty());
    assert!(store.messages_after(SessionId::new(), 0, 10).await.unwrap().is_empty());
    // A seq beyond what SQL integers hold is simply past the end.
    assert!(store.messages_after(sid, u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.list_messages(sid, Some(u64::MAX), 2).await.unwrap().messages.len(), 2);
}

pub async fn activity_record_and_list(store: Arc<dyn Store>) {
    let org = fixtures::org();
    let other = fixtures::org();
    store.create_org(&org).await.unwrap();
    store.create_org(&other).await.unwrap();
    let mut events = vec![];
    for kind in ["gateway.online", "user.login", "session.created", "gateway.offline"] {
        let event = fixtures::activity(org.id, kind);
        store.record_activity(&event).await.unwrap();
        events.push(event);
        store.record_activity(&fixtures::activity(other.id, kind)).await.unwrap();
    }
    events.reverse();
    let first = store.list_activity(org.id, Page::first(3)).await.unwrap();
    assert_eq!(first.items, events[..3], "newest first, metadata intact");
    let rest = store.list_activity(org.id, Page::after(first.next_cursor.unwrap(), 3)).await;
    let rest = rest.unwrap();
    assert_eq!(rest.items, events[3..]);
    assert_eq!(rest.next_cursor, None);
    let err = store.record_activity(&fixtures::activity(OrgId::new(), "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn append_batch_keeps_each_message_atomic(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    let first = fixtures::user_message(sid, "one");
    let Appended::New(stored_first) = store.append_message(&first).await.unwrap() else { panic!() };
    let other = fixtures::session(world.user.id, &world.agent);
    store.create_session(&other).await.unwrap();

    let mut retry = fixtures::user_message(sid, "one again");
    retry.client_msg_id = first.client_msg_id;
    let two = fixtures::user_message(sid, "two");
    let mut two_again = fixtures::user_message(sid, "two, repeated in the same batch");
    two_again.client_msg_id = two.client_msg_id;
    let orphan = fixtures::user_message(SessionId::new(), "nowhere");
    let elsewhere = fixtures::user_message(other.id, "other session");
    let mut reply = fixtures::user_message(sid, "three");
    reply.client_msg_id = None;
    reply.role = MessageRole::Agent;
    let batch = vec![retry, two.clone(), two_again, orphan, elsewhere, reply];
    let results = store.write_batch(&batch, &[]).await;
    assert_eq!(results.len(), 6);
    assert!(matches!(&results[0], Ok(Appended::Existing(m)) if *m == stored_first));
    let seq_of = |r: &crate::store::StoreResult<Appended>| r.as_ref().unwrap().message().seq;
    assert!(matches!(results[1], Ok(Appended::New(_))));
    assert_eq!(seq_of(&results[1]), 2);
    assert!(
        matches!(&results[2], Ok(Appended::Existing(m)) if m.content == "two"),
        "{:?}",
        results[2]
    );
    assert!(matches!(results[3], Err(StoreError::NotFound(_))), "{:?}", results[3]);
    assert_eq!(seq_of(&results[4]), 1);
    assert_eq!(seq_of(&results[5]), 3);
    let seqs: Vec<u64> =
        store.messages_after(sid, 0, 10).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "gapless despite the failures in the batch");
    assert_eq!(store.get_session(sid).await.unwrap().unwrap().last_seq, 3);
    assert!(store.write_batch(&[], &[]).await.is_empty());
}

/// A run has one reply: storing an agent message of a run that has one (a write retried
/// after an ambiguous failure, a run's end reported twice) gives back the stored reply, through
/// every path; `system` notices of a run are not keyed.
pub async fn an_agent_reply_is_stored_once_per_run(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    let reply = |run: &str, text: &str| NewMessage {
        role: MessageRole::Agent,
        client_msg_id: None,
        run_id: Some(run.to_owned()),
        ..fixtures::user_message(sid, text)
    };
    let Appended::New(first) = store.append_message(&reply("run-1", "the reply")).await.unwrap()
    else {
        panic!("a new reply")
    };
    let again = store.append_message(&reply("run-1", "the reply, again")).await.unwrap();
    assert_eq!(again, Appended::Existing(first.clone()), "one by one");
    let batch = vec![
        reply("run-1", "the reply, a third time"),
        reply("run-2", "another run's reply"),
        reply("run-2", "the same run's reply in the same batch"),
        NewMessage { role: MessageRole::System, ..reply("run-2", "a notice of the run") },
        NewMessage { role: MessageRole::System, ..reply("run-2", "another notice") },
    ];
    let results = store.write_batch(&batch, &[]).await;
    assert_eq!(results[0].as_ref().unwrap(), &Appended::Existing(first));
    let Ok(Appended::New(second)) = &results[1] else { panic!("{:?}", results[1]) };
    assert_eq!(results[2].as_ref().unwrap(), &Appended::Existing(second.clone()));
    assert!(matches!(results[3], Ok(Appended::New(_))), "{:?}", results[3]);
    assert!(matches!(results[4], Ok(Appended::New(_))), "{:?}", results[4]);
    let contents: Vec<String> =
        store.messages_after(sid, 0, 10).await.unwrap().into_iter().map(|m| m.content).collect();
    assert_eq!(
        contents,
        ["the reply", "another run's reply", "a notice of the run", "another notice"],
        "gapless, one reply per run"
    );
    // The same run id in another session is another run.
    let other = fixtures::session(world.user.id, &world.agent);
    store.create_session(&other).await.unwrap();
    let elsewhere = NewMessage { session_id: other.id, ..reply("run-1", "elsewhere") };
    assert!(matches!(store.append_message(&elsewhere).await, Ok(Appended::New(_))));
}

pub async fn session_origin_is_unique_per_user(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let origin = Uuid::now_v7();
    let mut first = fixtures::session(world.user.id, &world.agent);
    first.origin_client_msg_id = Some(origin);
    store.create_session(&first).await.unwrap();
    assert_eq!(store.get_session(first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.find_session_by_origin(world.user.id, origin).await.unwrap(), Some(first));

    let mut second = fixtures::session(world.user.id, &world.agent);
    second.origin_client_msg_id = Some(origin);
    let err = store.create_session(&second).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::SessionOrigin)), "{err:?}");
    assert_eq!(store.get_session(second.id).await.unwrap(), None, "nothing written");

    // Another user may start a session with the same client id; sessions without an origin
    // never conflict.
    let other = fixtures::user(world.org.id);
    store.create_user(&other).await.unwrap();
    let mut theirs = fixtures::session(other.id, &world.agent);
    theirs.origin_client_msg_id = Some(origin);
    store.create_session(&theirs).await.unwrap();
    for _ in 0..2 {
        store.create_session(&fixtures::session(world.user.id, &world.agent)).await.unwrap();
    }
    assert_eq!(store.find_session_by_origin(other.id, origin).await.unwrap(), Some(theirs));
    assert_eq!(store.find_session_by_origin(world.user.id, Uuid::now_v7()).await.unwrap(), None);
}

pub async fn delivery_states_only_move_forward(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    let user = store.append_message(&fixtures::user_message(sid, "hi")).await.unwrap();
    let user = user.into_message();
    assert_eq!(user.delivery, Some(DeliveryState::Stored));
    let mut reply = fixtures::user_message(sid, "hello");
    reply.role = MessageRole::Agent;
    reply.client_msg_id = None;
    let reply = store.append_message(&reply).await.unwrap().into_message();
    assert_eq!(reply.delivery, None, "only user messages are delivered");

    let update = |seq: u64, state: DeliveryState| DeliveryUpdate { session_id: sid, seq, state };
    let state = |seq: u64| {
        let store = store.clone();
        async move {
            let page = store.list_messages(sid, None, 10).await.unwrap();
            page.messages.into_iter().find(|m| m.seq == seq).unwrap().delivery
        }
    };
    assert!(store.set_delivery(update(1, DeliveryState::Sent)).await.unwrap());
    assert_eq!(state(1).await, Some(DeliveryState::Sent));
    assert!(!store.set_delivery(update(1, DeliveryState::Stored)).await.unwrap(), "no way back");
    assert!(!store.set_delivery(update(1, DeliveryState::Sent)).await.unwrap(), "no change");
    assert!(store.set_delivery(update(1, DeliveryState::Failed)).await.unwrap());
    assert!(!store.set_delivery(update(1, DeliveryState::Started)).await.unwrap());
    assert!(store.set_delivery(update(1, DeliveryState::Answered)).await.unwrap(), "a retry");
    assert!(!store.set_delivery(update(1, DeliveryState::Failed)).await.unwrap());
    assert_eq!(state(1).await, Some(DeliveryState::Answered));
    assert!(!store.set_delivery(update(2, DeliveryState::Sent)).await.unwrap(), "agent message");
    assert_eq!(state(2).await, None);
    assert!(!store.set_delivery(update(99, DeliveryState::Sent)).await.unwrap(), "no message");
    let missing =
        DeliveryUpdate { session_id: SessionId::new(), seq: 1, state: DeliveryState::Sent };
    assert!(!store.set_delivery(missing).await.unwrap());
}

pub async fn pending_deliveries_are_listed_per_gateway(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let sid = world.session.id;
    let gateway2 = fixtures::gateway(world.org.id);
    store.create_gateway(&gateway2).await.unwrap();
    let agent2 = fixtures::agent(gateway2.id);
    store.create_agent(&agent2).await.unwrap();
    let elsewhere = fixtures::session(world.user.id, &agent2);
    store.create_session(&elsewhere).await.unwrap();

    let mut appended = vec![];
    for (session, text) in [(sid, "a"), (sid, "b"), (elsewhere.id, "c"), (sid, "d"), (sid, "e")] {
        appended.push(store.append_message(&fixtures::user_message(session, text)).await.unwrap());
    }
    let seq = |i: usize| appended[i].message().seq;
    // b is answered, d started, e failed; a stays stored, c sent.
    let batch = [
        DeliveryUpdate { session_id: sid, seq: seq(1), state: DeliveryState::Answered },
        DeliveryUpdate { session_id: sid, seq: seq(3), state: DeliveryState::Started },
        DeliveryUpdate { session_id: sid, seq: seq(4), state: DeliveryState::Failed },
        DeliveryUpdate { session_id: elsewhere.id, seq: 1, state: DeliveryState::Sent },
    ];
    let mut reply = fixtures::user_message(sid, "reply to b");
    reply.role = MessageRole::Agent;
    reply.client_msg_id = None;
    let results = store.write_batch(&[reply], &batch).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].as_ref().unwrap().message().seq, 5);

    let pending = store.pending_deliveries(Some(world.gateway.id), None, 100).await.unwrap();
    let texts: Vec<(&str, Option<DeliveryState>)> =
        pending.iter().map(|p| (p.message.content.as_str(), p.message.delivery)).collect();
    assert_eq!(
        texts,
        vec![("a", Some(DeliveryState::Stored)), ("d", Some(DeliveryState::Started))],
        "oldest first, only the gateway's, only pending"
    );
    assert_eq!(pending[0].session, store.get_session(sid).await.unwrap().unwrap());
    let other = store.pending_deliveries(Some(gateway2.id), None, 100).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!((other[0].message.content.as_str(), other[0].session.id), ("c", elsewhere.id));
    let all = store.pending_deliveries(None, None, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(store.pending_deliveries(Some(GatewayId::new()), None, 10).await.unwrap().is_empty());

    // Pages: each starts after the last id of the one before, and together they hold every
    // pending message once, in order.
    let first = store.pending_deliveries(None, None, 2).await.unwrap();
    assert_eq!(first.len(), 2, "limited");
    let after = first.last().map(|p| p.message.id);
    let second = store.pending_deliveries(None, after, 2).await.unwrap();
    let paged: Vec<&str> =
        first.iter().chain(&second).map(|p| p.message.content.as_str()).collect();
    assert_eq!(paged, ["a", "c", "d"]);
    let last = second.last().map(|p| p.message.id);
    assert!(store.pending_deliveries(None, last, 2).await.unwrap().is_empty(), "past the end");
    let for_gateway =
        store.pending_deliveries(Some(world.gateway.id), Some(pending[0].message.id), 10);
    let rest: Vec<String> =
        for_gateway.await.unwrap().into_iter().map(|p| p.message.content).collect();
    assert_eq!(rest, ["d"], "a gateway's pages");
}
