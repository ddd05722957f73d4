//! The `/getLogs` answer as a stream: the log `Reader`'s chunks, and with `Follow` the chunks
//! written later, woken by inotify (no polling: an idle follower costs nothing), until the
//! container instance has ended and everything is sent, or the client has gone away.

use crate::logs::Reader;
use rustix::fs::inotify;
use smol::io::{AsyncBufRead, AsyncRead};
use smol::stream::Stream;
use smol::Async;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// What following needs to know besides the reader.
pub struct FollowCtx {
    /// The container's directory: watched for writes to its log and status files.
    pub dir: PathBuf,
    /// Whether the followed instance has ended (exit recorded, or its job gone).
    pub ended: Box<dyn Fn() -> bool + Send + Sync>,
    /// A duplicate of the client connection's descriptor, to notice a client that leaves.
    pub peer: Option<OwnedFd>,
    /// How long to sleep when inotify is unavailable, and between liveness checks.
    pub recheck: Duration,
}

struct State {
    reader: Option<Reader>,
    open: Box<dyn Fn() -> io::Result<Option<Reader>> + Send + Sync>,
    follow: Option<FollowCtx>,
    watch: Option<Async<OwnedFd>>,
    peer: Option<Async<OwnedFd>>,
    draining: bool,
}

/// The answer's stream. `open` (re)opens the reader: for a container that has not written yet
/// the log appears later.
pub fn stream(
    open: Box<dyn Fn() -> io::Result<Option<Reader>> + Send + Sync>,
    follow: Option<FollowCtx>,
) -> impl Stream<Item = io::Result<Vec<u8>>> + Send + Sync + 'static {
    let watch = follow.as_ref().and_then(|f| watch_dir(&f.dir).ok());
    let peer = follow
        .as_ref()
        .and_then(|f| f.peer.as_ref())
        .and_then(|p| p.try_clone().ok())
        .and_then(|p| Async::new(p).ok());
    let state = State {
        reader: None,
        open,
        follow,
        watch,
        peer,
        draining: false,
    };
    smol::stream::unfold(state, step)
}

fn watch_dir(dir: &std::path::Path) -> io::Result<Async<OwnedFd>> {
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
    let flags = inotify::WatchFlags::MODIFY
        | inotify::WatchFlags::CREATE
        | inotify::WatchFlags::MOVED_TO
        | inotify::WatchFlags::CLOSE_WRITE
        | inotify::WatchFlags::DELETE_SELF;
    inotify::add_watch(&fd, dir, flags)?;
    Async::new(fd)
}

async fn step(mut s: State) -> Option<(io::Result<Vec<u8>>, State)> {
    loop {
        if s.reader.is_none() {
            match (s.open)() {
                Ok(r) => s.reader = r,
                Err(e) => return Some((Err(e), s.ended_state())),
            }
        }
        if let Some(mut r) = s.reader.take() {
            let (r, chunk) = smol::unblock(move || {
                let c = r.next_chunk();
                (r, c)
            })
            .await;
            let done = r.done();
            s.reader = Some(r);
            match chunk {
                Ok(Some(c)) => return Some((Ok(c), s)),
                Err(e) => return Some((Err(e), s.ended_state())),
                Ok(None) if done => return None,
                Ok(None) => {}
            }
        }
        // At the current end of the log.
        let Some(f) = &s.follow else { return None };
        if s.draining {
            return None;
        }
        if (f.ended)() {
            // Everything the instance wrote is in the file once its exit is recorded: one
            // more pass sends the rest.
            s.draining = true;
            continue;
        }
        if !wait(&mut s).await {
            return None;
        }
    }
}

impl State {
    fn ended_state(mut self) -> State {
        self.follow = None;
        self.reader = None;
        self.open = Box::new(|| Ok(None));
        self
    }
}

/// Waits for a change in the container's directory (or a periodic re-check). `false`: the
/// client has gone away.
async fn wait(s: &mut State) -> bool {
    let recheck = s
        .follow
        .as_ref()
        .map_or(Duration::from_secs(1), |f| f.recheck);
    let change = async {
        match &s.watch {
            Some(w) => {
                let _ = w.readable().await;
                drain_events(w);
            }
            None => {
                smol::Timer::after(recheck).await;
            }
        }
        true
    };
    let timer = async {
        smol::Timer::after(recheck).await;
        true
    };
    let peer = async {
        match &s.peer {
            Some(p) => loop {
                let _ = p.readable().await;
                let mut b = [0u8; 1];
                match rustix::net::recv(
                    p.get_ref(),
                    &mut b,
                    rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
                ) {
                    Ok((0, _)) => return false,
                    Ok(_) => {
                        // The client sent more (a pipelined request): it is there; stop
                        // watching, or this would spin.
                        std::future::pending::<()>().await;
                    }
                    Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => {
                        continue
                    }
                    Err(_) => return false,
                }
            },
            None => std::future::pending().await,
        }
    };
    smol::future::or(peer, smol::future::or(change, timer)).await
}

fn drain_events(w: &Async<OwnedFd>) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(w.get_ref(), &mut buf), Ok(n) if n > 0) {}
}

/// Adapts the stream to what async-h1 sends as a chunked body.
pub struct StreamReader<S> {
    stream: Pin<Box<S>>,
    buf: Vec<u8>,
    pos: usize,
}

impl<S> StreamReader<S> {
    pub fn new(stream: S) -> Self {
        StreamReader {
            stream: Box::pin(stream),
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl<S: Stream<Item = io::Result<Vec<u8>>>> AsyncBufRead for StreamReader<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.pos >= this.buf.len() {
            match this.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.buf = chunk;
                    this.pos = 0;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(&[])),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(&this.buf[this.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.buf.len());
    }
}

impl<S: Stream<Item = io::Result<Vec<u8>>>> AsyncRead for StreamReader<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self;
        let available = match this.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(b)) => b,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        this.consume(n);
        Poll::Ready(Ok(n))
    }
}
