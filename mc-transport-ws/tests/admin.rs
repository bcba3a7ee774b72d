//! User administration through real HTTP: own organization only, paging, assignments.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestServer};
use mc_core::{Clock, OrgId, Organization, Role};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn members_cannot_use_admin_routes() {
    let s = TestServer::start().await;
    let member = s.create_user(s.org.id, "ivan", Role::Member).await;
    let token = s.login_ok("ivan", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::GET, "/api/v1/users".to_owned()),
        (Method::GET, format!("/api/v1/users/{}", member.id)),
        (Method::PATCH, format!("/api/v1/users/{}", member.id)),
        (Method::POST, format!("/api/v1/users/{}/assign", member.id)),
        (Method::DELETE, format!("/api/v1/users/{}/assign/{}", member.id, member.id)),
    ] {
        let r = s.send(method.clone(), &path, Some(&token), Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {}", r.body);
    }
    let r = s.send(Method::GET, "/api/v1/users", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn list_users_in_pages() {
    let s = TestServer::start().await;
    for i in 0..6 {
        s.create_user(s.org.id, &format!("user{i}"), Role::Member).await;
    }
    let mut names = vec![];
    let mut path = "/api/v1/users?limit=3".to_owned();
    loop {
        let r = s.get(&path, &s.admin_token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let users = r.body["users"].as_array().unwrap();
        assert!(users.len() <= 3);
        names.extend(users.iter().map(|u| u["username"].as_str().unwrap().to_owned()));
        match r.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/users?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, ["admin", "user0", "user1", "user2", "user3", "user4", "user5"]);
}

#[tokio::test]
async fn admins_see_only_their_own_organization() {
    let s = TestServer::start().await;
    let other = Organization { id: OrgId::new(), name: "globex".into(), created_at: s.clock.now() };
    s.services.store().create_org(&other).await.unwrap();
    let outsider = s.create_user(other.id, "outsider", Role::Member).await;
    let their_admin = s.create_user(other.id, "boss", Role::Admin).await;
    let their_agent = s.create_agent(other.id).await;
    let insider = s.create_user(s.org.id, "insider", Role::Member).await;
    let our_agent = s.create_agent(s.org.id).await;

    // Another organization's user: 404, exactly like an id that does not exist.
    let missing = s.get(&format!("/api/v1/users/{}", mc_core::UserId::new()), &s.admin_token).await;
    let foreign = s.get(&format!("/api/v1/users/{}", outsider.id), &s.admin_token).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.body, missing.body);
    let r = s
        .patch(
            &format!("/api/v1/users/{}", outsider.id),
            &s.admin_token,
            json!({ "status": "suspended" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.services.store().get_user(outsider.id).await.unwrap().unwrap().status,
        mc_core::UserStatus::Active,
        "nothing changed"
    );
    let r = s
        .post(
            &format!("/api/v1/users/{}/assign", outsider.id),
            Some(&s.admin_token),
            json!({ "agent_id": our_agent.id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s
        .post(
            &format!("/api/v1/users/{}/assign", insider.id),
            Some(&s.admin_token),
            json!({ "agent_id": their_agent.id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another org's agent");
    assert_eq!(r.error_message(), "agent not found");
    let r = s
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{}/assign/{}", outsider.id, their_agent.id),
            Some(&s.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let listed = s.get("/api/v1/users?limit=200", &s.admin_token).await;
    let names: Vec<_> =
        listed.body["users"].as_array().unwrap().iter().map(|u| u["username"].clone()).collect();
    assert_eq!(names, [json!("admin"), json!("insider")]);

    // And the other organization's admin cannot see ours.
    let boss = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "organization": "globex", "username": "boss", "password": PASSWORD }),
        )
        .await;
    let boss_token = boss.body["access_token"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/api/v1/users/{}", insider.id), boss_token).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/api/v1/users/{}", their_admin.id), boss_token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn roles_and_self_protection() {
    let s = TestServer::start().await;
    let judy = s.create_user(s.org.id, "judy", Role::Member).await;
    let r = s
        .patch(&format!("/api/v1/users/{}", judy.id), &s.admin_token, json!({ "role": "admin" }))
        .await;
    assert_eq!((r.status, r.body["role"].as_str()), (StatusCode::OK, Some("admin")));
    let r = s
        .patch(
            &format!("/api/v1/users/{}", s.admin.id),
            &s.admin_token,
            json!({ "role": "member" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = s
        .patch(
            &format!("/api/v1/users/{}", s.admin.id),
            &s.admin_token,
            json!({ "status": "suspended" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // A demoted admin's existing token no longer opens admin routes: the role is read live.
    let judy_token =
        s.login_ok("judy", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/api/v1/users", &judy_token).await.status, StatusCode::OK);
    s.patch(&format!("/api/v1/users/{}", judy.id), &s.admin_token, json!({ "role": "member" }))
        .await;
    assert_eq!(s.get("/api/v1/users", &judy_token).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn assign_and_unassign_agents() {
    let s = TestServer::start().await;
    let kim = s.create_user(s.org.id, "kim", Role::Member).await;
    let agent = s.create_agent(s.org.id).await;
    let path = format!("/api/v1/users/{}/assign", kim.id);
    let mut events = s.services.events().subscribe();

    let r = s
        .post(
            &path,
            Some(&s.admin_token),
            json!({ "agent_id": agent.id, "role": "owner", "board_name": "Support" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["role"], "owner");
    assert_eq!(r.body["board_name"], "Support");
    assert_eq!(r.body["assigned_by"], s.admin.id.to_string());
    assert!(matches!(
        common::next_event(&mut events),
        mc_core::RelayEvent::AssignmentsChanged { .. }
    ));
    let stored = s.services.store().get_assignment(kim.id, agent.id).await.unwrap().unwrap();
    assert_eq!(stored.role, mc_core::AssignmentRole::Owner);

    let dup = s.post(&path, Some(&s.admin_token), json!({ "agent_id": agent.id })).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert!(dup.error_message().contains("already assigned"), "{}", dup.body);
    let unknown =
        s.post(&path, Some(&s.admin_token), json!({ "agent_id": mc_core::AgentId::new() })).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let del = format!("/api/v1/users/{}/assign/{}", kim.id, agent.id);
    assert_eq!(
        s.send(Method::DELETE, &del, Some(&s.admin_token), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(s.services.store().get_assignment(kim.id, agent.id).await.unwrap().is_none());
    let again = s.send(Method::DELETE, &del, Some(&s.admin_token), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.error_message(), "assignment not found");
}
