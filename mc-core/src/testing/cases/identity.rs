//! Cases for organizations, users, login failures and refresh tokens.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::TimeDelta;

use crate::ids::*;
use crate::model::*;
use crate::store::{AttemptWindow, ConflictKind, LoginAttempt, Page, Store, StoreError};
use crate::testing::fixtures::{self, ChatWorld, now};

pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(!store.backend_name().is_empty());
}

pub async fn org_create_read_list(store: Arc<dyn Store>) {
    let a = fixtures::org();
    let b = fixtures::org();
    let c = fixtures::org();
    for org in [&a, &b, &c] {
        store.create_org(org).await.unwrap();
    }
    assert_eq!(store.get_org(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.find_org_by_name(&b.name).await.unwrap(), Some(b.clone()));
    assert_eq!(store.get_org(OrgId::new()).await.unwrap(), None);
    assert_eq!(store.find_org_by_name("no such org").await.unwrap(), None);

    let mut dup = fixtures::org();
    dup.name = a.name.clone();
    let err = store.create_org(&dup).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::OrganizationName)), "{err:?}");
    let err = store.create_org(&a).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "same id twice: {err:?}");

    let first = store.list_orgs(Page::first(2)).await.unwrap();
    assert_eq!(first.items, vec![a.clone(), b.clone()]);
    let second = store.list_orgs(Page::after(first.next_cursor.unwrap(), 2)).await.unwrap();
    assert_eq!(second.items, vec![c]);
    assert_eq!(second.next_cursor, None);
}

pub async fn user_create_read_update(store: Arc<dyn Store>) {
    let org = fixtures::org();
    store.create_org(&org).await.unwrap();
    let mut user = fixtures::user(org.id);
    user.username = format!("Mixed.Case-{}", &fixtures::unique("u")[2..]);
    user.email = Some("someone@example.com".into());
    store.create_user(&user).await.unwrap();

    assert_eq!(store.get_user(user.id).await.unwrap(), Some(user.clone()));
    let lower = user.username.to_ascii_lowercase();
    assert_eq!(store.find_user_by_username(org.id, &lower).await.unwrap(), Some(user.clone()));
    assert_eq!(store.find_user_by_username(OrgId::new(), &user.username).await.unwrap(), None);
    assert_eq!(store.get_user(UserId::new()).await.unwrap(), None);

    let mut changed = user.clone();
    changed.email = None;
    changed.phone = Some("+15550100".into());
    changed.display_name = Some("Zoë 😀".into());
    changed.avatar_url = Some("https://example.com/a.png".into());
    changed.role = Role::Admin;
    changed.status = UserStatus::Suspended;
    changed.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".into();
    changed.last_login_at = Some(now());
    changed.updated_at = now() + TimeDelta::seconds(1);
    changed.username = fixtures::unique("renamed");
    store.update_user(&changed).await.unwrap();
    assert_eq!(store.get_user(user.id).await.unwrap(), Some(changed.clone()));

    let ghost = fixtures::user(org.id);
    let err = store.update_user(&ghost).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let orphan = fixtures::user(OrgId::new());
    let err = store.create_user(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "user in a missing org: {err:?}");
    assert_eq!(store.get_user(orphan.id).await.unwrap(), None);
}

pub async fn username_unique_per_org_ignoring_case(store: Arc<dyn Store>) {
    let org = fixtures::org();
    let other_org = fixtures::org();
    store.create_org(&org).await.unwrap();
    store.create_org(&other_org).await.unwrap();
    let alice = fixtures::user(org.id);
    store.create_user(&alice).await.unwrap();

    let mut dup = fixtures::user(org.id);
    dup.username = alice.username.to_ascii_uppercase();
    let err = store.create_user(&dup).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::Username)), "{err:?}");
    assert_eq!(store.get_user(dup.id).await.unwrap(), None, "nothing written on conflict");

    let mut elsewhere = fixtures::user(other_org.id);
    elsewhere.username = alice.username.clone();
    store.create_user(&elsewhere).await.unwrap();

    let mut bob = fixtures::user(org.id);
    store.create_user(&bob).await.unwrap();
    bob.username = alice.username.clone();
    let err = store.update_user(&bob).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::Username)), "{err:?}");
    assert_ne!(store.get_user(bob.id).await.unwrap().unwrap().username, alice.username);
}

pub async fn users_list_in_pages_per_org(store: Arc<dyn Store>) {
    let org = fixtures::org();
    let other = fixtures::org();
    store.create_org(&org).await.unwrap();
    store.create_org(&other).await.unwrap();
    let mut ids = vec![];
    for i in 0..7 {
        let user = fixtures::user(org.id);
        store.create_user(&user).await.unwrap();
        ids.push(user.id);
        if i % 2 == 0 {
            store.create_user(&fixtures::user(other.id)).await.unwrap();
        }
    }
    let mut seen = vec![];
    let mut page = Page::first(3);
    let mut sizes = vec![];
    loop {
        let got = store.list_users(org.id, page).await.unwrap();
        sizes.push(got.items.len());
        seen.extend(got.items.iter().map(|u| u.id));
        match got.next_cursor {
            Some(cursor) => page = Page::after(cursor, 3),
            None => break,
        }
    }
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(seen, ids, "every user once, in creation order, none of the other org");
    let empty = store.list_users(OrgId::new(), Page::first(10)).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());
}

pub async fn delete_user_cascades(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let user = world.user.id;
    store.append_message(&fixtures::user_message(world.session.id, "hi")).await.unwrap();
    let token = fixtures::refresh_token(user, TokenFamilyId::new());
    store.insert_refresh_token(&token).await.unwrap();
    // A second user keeps their data.
    let bystander = fixtures::user(world.org.id);
    store.create_user(&bystander).await.unwrap();
    store.create_assignment(&fixtures::assignment(bystander.id, world.agent.id)).await.unwrap();

    store.delete_user(user).await.unwrap();
    assert_eq!(store.get_user(user).await.unwrap(), None);
    assert_eq!(store.get_assignment(user, world.agent.id).await.unwrap(), None);
    assert_eq!(store.get_session(world.session.id).await.unwrap(), None);
    let err = store.list_messages(world.session.id, None, 10).await;
    assert!(matches!(err, Ok(ref page) if page.messages.is_empty()), "{err:?}");
    assert_eq!(store.find_refresh_token(&token.token_hash).await.unwrap(), None);
    assert!(store.get_assignment(bystander.id, world.agent.id).await.unwrap().is_some());
    assert!(store.get_agent(world.agent.id).await.unwrap().is_some());

    let err = store.delete_user(user).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

fn window(at: Timestamp, threshold: u32) -> AttemptWindow {
    AttemptWindow {
        start: at - TimeDelta::minutes(15),
        stale_before: at - TimeDelta::minutes(1),
        threshold,
    }
}

async fn reserve(store: &Arc<dyn Store>, subject: &SecretHash, at: Timestamp) -> LoginAttempt {
    store.reserve_login_attempt(subject, at, window(at, 3)).await.unwrap()
}

async fn fail(store: &Arc<dyn Store>, subject: &SecretHash, at: Timestamp) {
    let LoginAttempt::Reserved(id) = reserve(store, subject, at).await else { panic!("reserved") };
    store.settle_login_attempt(subject, id, false).await.unwrap();
}

pub async fn login_attempts_are_reserved_in_a_window(store: Arc<dyn Store>) {
    let subject = SecretHash::of(&fixtures::unique("subject"));
    let other = SecretHash::of(&fixtures::unique("subject"));
    let t0 = now();
    for minutes in [0, 5, 10] {
        fail(&store, &subject, t0 + TimeDelta::minutes(minutes)).await;
    }
    let expected: Vec<_> = [0, 5, 10].into_iter().map(|m| t0 + TimeDelta::minutes(m)).collect();
    let at = t0 + TimeDelta::minutes(11);
    assert_eq!(reserve(&store, &subject, at).await, LoginAttempt::Refused(expected));
    assert!(matches!(reserve(&store, &other, at).await, LoginAttempt::Reserved(_)), "apart");
    // At t0+20 min the failure at t0 has left the window: one place again, pending.
    let at = t0 + TimeDelta::minutes(20);
    let LoginAttempt::Reserved(id) = reserve(&store, &subject, at).await else { panic!() };
    assert_eq!(reserve(&store, &subject, at).await, LoginAttempt::Busy, "one is being checked");
    // A success clears the subject's failures.
    store.settle_login_attempt(&subject, id, true).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(reserve(&store, &subject, at).await, LoginAttempt::Reserved(_)));
    }
    // Pending attempts left for longer than a minute count as failed (their checker died).
    assert_eq!(reserve(&store, &subject, at).await, LoginAttempt::Busy);
    let later = at + TimeDelta::minutes(2);
    let stale = reserve(&store, &subject, later).await;
    assert_eq!(stale, LoginAttempt::Refused(vec![at, at, at]));
}

pub async fn login_attempt_reservations_race_to_the_threshold(store: Arc<dyn Store>) {
    let subject = SecretHash::of(&fixtures::unique("raced"));
    let at = now();
    let racers: Vec<_> = (0..30)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(
                async move { store.reserve_login_attempt(&subject, at, window(at, 5)).await },
            )
        })
        .collect();
    let (mut reserved, mut busy) = (0, 0);
    for racer in racers {
        match racer.await.unwrap().unwrap() {
            LoginAttempt::Reserved(_) => reserved += 1,
            LoginAttempt::Busy => busy += 1,
            LoginAttempt::Refused(_) => panic!("nothing failed yet"),
        }
    }
    assert_eq!((reserved, busy), (5, 25), "exactly the threshold of 30 at once");
}

async fn user_in_new_org(store: &Arc<dyn Store>) -> User {
    let org = fixtures::org();
    store.create_org(&org).await.unwrap();
    let user = fixtures::user(org.id);
    store.create_user(&user).await.unwrap();
    user
}

pub async fn refresh_token_rotation(store: Arc<dyn Store>) {
    let user = user_in_new_org(&store).await;
    let family = TokenFamilyId::new();
    let first = fixtures::refresh_token(user.id, family);
    store.insert_refresh_token(&first).await.unwrap();
    assert_eq!(store.find_refresh_token(&first.token_hash).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get_refresh_token(first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.find_refresh_token(&SecretHash::of("nope")).await.unwrap(), None);

    let second = fixtures::refresh_token(user.id, family);
    let at = now();
    assert!(store.rotate_refresh_token(first.id, &second, at).await.unwrap());
    let used = store.get_refresh_token(first.id).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(at));
    assert_eq!(used.replaced_by, Some(second.id));
    assert!(!used.revoked);
    assert_eq!(store.find_refresh_token(&second.token_hash).await.unwrap(), Some(second.clone()));

    // The used token cannot be rotated again; its would-be successor is not stored.
    let third = fixtures::refresh_token(user.id, family);
    assert!(!store.rotate_refresh_token(first.id, &third, now()).await.unwrap());
    assert_eq!(store.get_refresh_token(third.id).await.unwrap(), None);
    // Nor can a revoked one.
    store.revoke_refresh_family(family).await.unwrap();
    assert!(!store.rotate_refresh_token(second.id, &third, now()).await.unwrap());
    assert_eq!(store.get_refresh_token(third.id).await.unwrap(), None);
    // Rotating a token that does not exist is not an error, just not a rotation.
    assert!(!store.rotate_refresh_token(RefreshTokenId::new(), &third, now()).await.unwrap());
}

pub async fn refresh_token_rotation_race_has_one_winner(store: Arc<dyn Store>) {
    let user = user_in_new_org(&store).await;
    let family = TokenFamilyId::new();
    let token = fixtures::refresh_token(user.id, family);
    store.insert_refresh_token(&token).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        let successor = fixtures::refresh_token(user.id, family);
        tasks.spawn(async move {
            let won = store.rotate_refresh_token(token.id, &successor, now()).await.unwrap();
            (won, successor.id)
        });
    }
    let mut winners = vec![];
    let mut losers = vec![];
    while let Some(result) = tasks.join_next().await {
        let (won, id) = result.unwrap();
        if won { winners.push(id) } else { losers.push(id) }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent rotation wins");
    let used = store.get_refresh_token(token.id).await.unwrap().unwrap();
    assert_eq!(used.replaced_by, Some(winners[0]));
    for loser in losers {
        assert_eq!(store.get_refresh_token(loser).await.unwrap(), None);
    }
}

pub async fn refresh_family_liveness_follows_revocation(store: Arc<dyn Store>) {
    let user = user_in_new_org(&store).await;
    let family = TokenFamilyId::new();
    assert!(!store.refresh_family_is_live(family).await.unwrap(), "no such family");
    store.insert_refresh_token(&fixtures::refresh_token(user.id, family)).await.unwrap();
    store.insert_refresh_token(&fixtures::refresh_token(user.id, family)).await.unwrap();
    let other = TokenFamilyId::new();
    store.insert_refresh_token(&fixtures::refresh_token(user.id, other)).await.unwrap();
    assert!(store.refresh_family_is_live(family).await.unwrap());
    store.revoke_refresh_family(family).await.unwrap();
    assert!(!store.refresh_family_is_live(family).await.unwrap());
    assert!(store.refresh_family_is_live(other).await.unwrap(), "other families stay");
}

pub async fn refresh_token_revocation_and_expiry(store: Arc<dyn Store>) {
    let user = user_in_new_org(&store).await;
    let other_user = user_in_new_org(&store).await;
    let (fam_a, fam_b) = (TokenFamilyId::new(), TokenFamilyId::new());
    let a1 = fixtures::refresh_token(user.id, fam_a);
    let a2 = fixtures::refresh_token(user.id, fam_a);
    let b1 = fixtures::refresh_token(user.id, fam_b);
    let mut expired = fixtures::refresh_token(user.id, TokenFamilyId::new());
    expired.expires_at = now() - TimeDelta::days(1);
    let theirs = fixtures::refresh_token(other_user.id, TokenFamilyId::new());
    for t in [&a1, &b1, &expired, &theirs] {
        store.insert_refresh_token(t).await.unwrap();
    }
    assert!(store.rotate_refresh_token(a1.id, &a2, now()).await.unwrap());

    let mut dup = fixtures::refresh_token(user.id, fam_a);
    dup.token_hash = b1.token_hash;
    let err = store.insert_refresh_token(&dup).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::TokenHash)), "{err:?}");
    let orphan = fixtures::refresh_token(UserId::new(), TokenFamilyId::new());
    let err = store.insert_refresh_token(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    assert_eq!(store.revoke_refresh_family(fam_a).await.unwrap(), 2);
    assert_eq!(store.revoke_refresh_family(fam_a).await.unwrap(), 0, "already revoked");
    assert!(store.get_refresh_token(a2.id).await.unwrap().unwrap().revoked);
    assert!(!store.get_refresh_token(b1.id).await.unwrap().unwrap().revoked);

    // Revoke all of the user's tokens but family B's; the other user is untouched.
    assert_eq!(store.revoke_user_refresh_tokens(user.id, Some(fam_b)).await.unwrap(), 1);
    assert!(!store.get_refresh_token(b1.id).await.unwrap().unwrap().revoked);
    assert!(store.get_refresh_token(expired.id).await.unwrap().unwrap().revoked);
    assert!(!store.get_refresh_token(theirs.id).await.unwrap().unwrap().revoked);
    assert_eq!(store.revoke_user_refresh_tokens(user.id, None).await.unwrap(), 1);
    assert!(store.get_refresh_token(b1.id).await.unwrap().unwrap().revoked);

    assert_eq!(store.delete_expired_refresh_tokens(now()).await.unwrap(), 1);
    assert_eq!(store.get_refresh_token(expired.id).await.unwrap(), None);
    let remaining: HashSet<_> = [a1.id, a2.id, b1.id, theirs.id].into();
    for id in remaining {
        assert!(store.get_refresh_token(id).await.unwrap().is_some());
    }
}
