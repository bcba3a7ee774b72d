//! [`ReadBudget`]: a connection that reads at most a fixed number of bytes until it is told
//! the peer is authenticated, then gets out of the way. A WebSocket's frame limit is fixed at
//! its handshake, so a gateway's socket (4 MiB frames once it is known) is read through one of
//! these: before its `auth` frame is checked, the peer cannot make the relay buffer more than
//! the budget, whatever size its first frame announces.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Marks a lifted budget.
const UNLIMITED: usize = usize::MAX;

/// The error a read past the budget fails with (inside an `InvalidData` I/O error), so the
/// socket's reader can tell it from a broken connection and close with 1009.
#[derive(Debug, thiserror::Error)]
#[error("the peer sent more than it may before authenticating")]
pub(crate) struct BudgetSpent;

impl BudgetSpent {
    /// Whether `err` is a read past a budget.
    pub(crate) fn caused(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|inner| inner.is::<BudgetSpent>())
    }
}

/// Lifts a [`ReadBudget`]'s limit once the peer is known.
#[derive(Debug, Clone)]
pub(crate) struct BudgetLift(Arc<AtomicUsize>);

impl BudgetLift {
    /// From now on the connection reads without a limit.
    pub(crate) fn lift(&self) {
        self.0.store(UNLIMITED, Ordering::Release);
    }
}

/// `inner`, reading at most the budget's bytes until [`BudgetLift::lift`]; past the budget a
/// read fails (`InvalidData`), which ends the connection.
#[derive(Debug)]
pub(crate) struct ReadBudget<S> {
    inner: S,
    left: Arc<AtomicUsize>,
}

impl<S> ReadBudget<S> {
    /// `inner` with `bytes` to read before the limit is lifted.
    pub(crate) fn new(inner: S, bytes: usize) -> (Self, BudgetLift) {
        let left = Arc::new(AtomicUsize::new(bytes.min(UNLIMITED - 1)));
        (Self { inner, left: left.clone() }, BudgetLift(left))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBudget<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.left.load(Ordering::Acquire);
        if left == UNLIMITED {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if left == 0 {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, BudgetSpent)));
        }
        // Read into a buffer no larger than what is left (small: only before authentication).
        let mut limited = vec![0u8; left.min(buf.remaining())];
        let mut part = ReadBuf::new(&mut limited);
        let polled = Pin::new(&mut self.inner).poll_read(cx, &mut part);
        if let Poll::Ready(Ok(())) = &polled {
            let read = part.filled();
            buf.put_slice(read);
            // Only this connection's reader spends the budget; a lift meanwhile wins.
            let _ = self.left.compare_exchange(
                left,
                left - read.len(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBudget<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_stop_at_the_budget_until_it_is_lifted() {
        let (mut peer, ours) = tokio::io::duplex(1 << 16);
        let (mut budgeted, lift) = ReadBudget::new(ours, 10);
        peer.write_all(&[7u8; 100]).await.unwrap();
        let mut got = [0u8; 100];
        let mut read = 0;
        while read < 10 {
            read += budgeted.read(&mut got[read..]).await.unwrap();
        }
        assert_eq!(read, 10, "never more than the budget");
        let err = budgeted.read(&mut got[read..]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        lift.lift();
        let more = budgeted.read(&mut got[read..]).await.unwrap();
        assert!(more > 0, "lifted: the rest reads");
    }
}
