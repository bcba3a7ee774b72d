// The Android-facing (Kotlin) bindings against a real mc-server over TLS, on the JVM with
// JNA. Run by mc-ffi/tests/ffi_bindings.rs: `java … ClientTestKt URL CA_FILE PASSWORD`.
import dev.missioncontrol.relay.*
import java.io.File
import java.util.concurrent.CopyOnWriteArrayList
import kotlinx.coroutines.*

class Recorder : McListener {
    val states = CopyOnWriteArrayList<ClientState>()
    val messages = CopyOnWriteArrayList<Message>()
    val texts = CopyOnWriteArrayList<String>()
    val tokens = CopyOnWriteArrayList<String>()
    override fun onState(state: ClientState) { states.add(state) }
    override fun onMessage(message: Message) { messages.add(message) }
    override fun onReplyText(sessionId: String, runId: String, text: String) { texts.add(text) }
    override fun onSystem(event: SystemEvent) {}
    override fun onTokens(access: String, refresh: String) { tokens.add(access) }
    override fun onOutbox(pending: UInt) {}
}

fun check(condition: Boolean, what: String) {
    if (!condition) throw AssertionError(what)
}

suspend fun waitFor(what: String, condition: () -> Boolean) {
    withTimeout(30_000) { while (!condition()) delay(20) }
    check(condition(), what)
}

fun main(args: Array<String>) = runBlocking {
    val (url, caFile, password) = args
    val client = McClient.withCa(url, File(caFile).readText())
    val recorder = Recorder()
    client.setListener(recorder)

    // The error enum.
    try {
        client.signIn("", "alice", "wrong password")
        throw AssertionError("a wrong password signed in")
    } catch (e: McException.InvalidCredentials) {
        println("wrong password -> ${e::class.simpleName}: ${e.message}")
    }

    client.signIn("", "alice", password)
    check(recorder.tokens.size == 1, "the listener got the tokens")
    // connect resolves once the socket is authenticated: the agents are known right away.
    val agents = client.connect()
    check(client.state() is ClientState.Connected, "connected when connect returns")
    val agent = agents.single { it.agentName == "Echo" }
    check(client.agents().map { it.agentId } == listOf(agent.agentId), "agents() agrees")

    // Chat with streamed text.
    val receipt = client.sendMessage(agent.agentId, null, "hello from kotlin")
    waitFor("the reply") { recorder.messages.any { it.sessionId == receipt.sessionId && it.role == "agent" } }
    val reply = recorder.messages.first { it.sessionId == receipt.sessionId && it.role == "agent" }
    check(reply.content.contains("hello from kotlin"), "the echo: ${reply.content}")
    check(recorder.texts.size > 1, "the reply streamed in pieces: ${recorder.texts}")
    check(recorder.texts.last() == reply.content, "the last text is the final reply")

    // 50 concurrent sends, 50 acks.
    val receipts = (0 until 50).map { i ->
        async(Dispatchers.Default) { client.sendMessage(agent.agentId, receipt.sessionId, "m$i") }
    }.awaitAll()
    check(receipts.map { it.messageId }.toSet().size == 50, "50 distinct acks")
    check(client.outboxLen() == 0u, "the outbox is empty")

    client.disconnect()
    waitFor("disconnected") { client.state() is ClientState.Disconnected }
    client.close()
    println("kotlin bindings: ok (${receipts.size} concurrent acks, ${recorder.texts.size} text updates)")
}
