"""The generated Python bindings against a real mc-server over TLS."""

import asyncio
import time

import pytest

import mc_ffi
from conftest import Recorder, Server


def connected(client, recorder):
    # connect resolves once the socket is authenticated: the agents are known right away.
    agents = asyncio.run(client.connect())
    assert client.state().is_connected()
    assert [a.agent_name for a in agents] == ["Echo"]
    assert [a.agent_id for a in client.agents()] == [agents[0].agent_id]
    return agents[0].agent_id


def agent_replies(recorder, session_id):
    return [m for m in recorder.messages if m.session_id == session_id and m.role == "agent"]


def test_sign_in_and_chat_with_streamed_text(server):
    client = server.client()
    recorder = Recorder()
    client.set_listener(recorder)
    asyncio.run(client.sign_in("", "alice", server.alice_password))
    assert recorder.tokens, "the listener got the tokens"
    agent = connected(client, recorder)

    receipt = asyncio.run(client.send_message(agent, None, "hello from python over tls"))
    assert receipt.seq == 1 and receipt.session_id
    recorder.wait(lambda: agent_replies(recorder, receipt.session_id), what="the reply")
    reply = agent_replies(recorder, receipt.session_id)[0]
    assert "hello from python over tls" in reply.content
    streamed = [t for (s, _, t) in recorder.texts if s == receipt.session_id]
    assert len(streamed) > 1, "the reply streamed in several pieces"
    assert all(reply.content.startswith(t) or t in reply.content for t in streamed)
    assert streamed[-1] == reply.content
    page = asyncio.run(client.history(receipt.session_id, None, 50))
    assert [m.role for m in page.messages] == ["user", "agent"]
    sessions = asyncio.run(client.sessions())
    assert receipt.session_id in [s.session_id for s in sessions]
    client.disconnect()


def test_wrong_password_is_the_invalid_credentials_variant(server):
    client = server.client()
    with pytest.raises(mc_ffi.McError.InvalidCredentials):
        asyncio.run(client.sign_in("demo", "alice", "not the password"))
    with pytest.raises(mc_ffi.McError.InvalidInput):
        asyncio.run(client.send_message("not-a-uuid", None, "x"))
    with pytest.raises(mc_ffi.McError.InvalidInput):
        mc_ffi.McClient("ftp://127.0.0.1")
    with pytest.raises(mc_ffi.McError.Network):
        # The relay's certificate is not trusted without its CA.
        asyncio.run(mc_ffi.McClient(server.url).sign_in("", "alice", server.alice_password))
    # connect fails with the reason when the relay refuses the tokens (even refreshed).
    refused = server.client()
    refused.restore_tokens("not-an-access-token", "not-a-refresh-token")
    with pytest.raises(mc_ffi.McError.Unauthenticated):
        asyncio.run(refused.connect())
    with pytest.raises(mc_ffi.McError.Unauthenticated):
        asyncio.run(server.client().connect())  # no tokens at all


def test_fifty_concurrent_sends_get_fifty_acks(server):
    client = server.client()
    recorder = Recorder()
    client.set_listener(recorder)
    asyncio.run(client.sign_in("", "alice", server.alice_password))
    agent = connected(client, recorder)
    first = asyncio.run(client.send_message(agent, None, "start"))

    async def burst():
        return await asyncio.gather(
            *[client.send_message(agent, first.session_id, f"m{i}") for i in range(50)]
        )

    receipts = asyncio.run(burst())
    assert len({r.message_id for r in receipts}) == 50
    assert sorted(r.seq for r in receipts)[0] > first.seq
    assert client.outbox_len() == 0
    client.disconnect()


def test_restart_with_queued_messages_delivers_each_once_and_resume_brings_missed_replies():
    server = Server()
    server.start()
    try:
        client = server.client()
        recorder = Recorder()
        client.set_listener(recorder)
        asyncio.run(client.sign_in("", "alice", server.alice_password))
        agent = connected(client, recorder)
        first = asyncio.run(client.send_message(agent, None, "before the restart"))
        session = first.session_id
        recorder.wait(lambda: agent_replies(recorder, session), what="the first reply")

        # Away: a reply is produced while this client is not connected.
        client.disconnect()
        recorder.wait(lambda: not client.state().is_connected(), what="disconnected")
        other = server.client()
        asyncio.run(other.sign_in("", "alice", server.alice_password))
        other_recorder = Recorder()
        other.set_listener(other_recorder)
        connected(other, other_recorder)
        asyncio.run(other.send_message(agent, session, "sent from another device"))
        other_recorder.wait(lambda: len(agent_replies(other_recorder, session)) >= 1, what="reply on the other device")
        other.disconnect()

        # The server goes down; three messages are sent meanwhile.
        asyncio.run(client.connect())
        assert client.state().is_connected()
        recorder.wait(lambda: len(agent_replies(recorder, session)) >= 2, what="the missed reply by resume")
        assert any(m.content == "sent from another device" and m.role == "user" for m in recorder.messages)
        server.stop()
        recorder.wait(lambda: not client.state().is_connected(), what="the drop")

        async def queued():
            sends = [
                asyncio.ensure_future(client.send_message(agent, session, f"queued {i}"))
                for i in range(3)
            ]
            await asyncio.sleep(0.5)
            assert client.outbox_len() == 3
            server.start()
            client.network_changed()
            return await asyncio.wait_for(asyncio.gather(*sends), timeout=60)

        receipts = asyncio.run(queued())
        assert [r.seq for r in receipts] == sorted(r.seq for r in receipts)
        recorder.wait(lambda: len(agent_replies(recorder, session)) >= 5, timeout=60, what="three more replies")

        page = asyncio.run(client.history(session, None, 200))
        users = [m.content for m in page.messages if m.role == "user"]
        for i in range(3):
            assert users.count(f"queued {i}") == 1, "each queued message stored exactly once"
        seqs = [m.seq for m in recorder.messages if m.session_id == session]
        assert len(seqs) == len(set(seqs)), "no message reached the app twice"
        client.disconnect()
    finally:
        server.stop()


def test_access_token_expiry_is_refreshed_without_the_app_noticing():
    server = Server("--access-token-ttl-secs", "2")
    server.start()
    try:
        client = server.client()
        recorder = Recorder()
        client.set_listener(recorder)
        asyncio.run(client.sign_in("", "alice", server.alice_password))
        agent = connected(client, recorder)
        recorder.wait(lambda: len(recorder.tokens) >= 3, timeout=30, what="refreshed tokens")
        assert recorder.tokens[-1] != recorder.tokens[0]
        # Refreshed before expiry, the open socket was extended: it never dropped.
        assert not any(s.is_disconnected() for s in recorder.states[1:]), recorder.states
        recorder.wait(lambda: client.state().is_connected(), what="connected again")
        receipt = asyncio.run(client.send_message(agent, None, "after the refresh"))
        recorder.wait(lambda: agent_replies(recorder, receipt.session_id), what="the reply")
        assert not any(s.is_closed() for s in recorder.states)
        client.disconnect()
    finally:
        server.stop()
