//! Parallel gzip (pigz-style), still one standard gzip stream: the tar stream is cut into fixed
//! 1 MiB blocks, each deflated on a worker thread with the previous block's last 32 KiB
//! as its dictionary and ended on a byte boundary (sync flush), then the pieces are written in
//! order and their CRC-32s combined. Block boundaries depend only on the input, never on the
//! number of threads, so the bytes (and the sha256) are the same on any machine; at most a few
//! blocks per thread are in flight, so memory stays bounded.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::error::{Context, Result};

/// Input bytes per independently compressed block; fixed so the output never depends on threads.
pub(super) const BLOCK: usize = 1 << 20;
/// Deflate's window: each block is primed with this much of the input before it.
const DICT: usize = 32 * 1024;

pub(super) fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(32)
}

/// One block to compress, and where to send the result.
struct Job {
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
    level: u32,
    reply: SyncSender<io::Result<Compressed>>,
}

struct Compressed {
    deflate: Vec<u8>,
    crc: Crc,
}

/// Raw deflate of one block: sync flush (byte-aligned, not final) or, for the last, finish.
fn compress_block(job: &Job) -> io::Result<Compressed> {
    let mut c = Compress::new(Compression::new(job.level), false);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.len().max(4096));
        }
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done = c.total_in() as usize == job.data.len() && out.len() < out.capacity();
        if status == Status::StreamEnd || (!job.last && done) {
            break;
        }
    }
    let mut crc = Crc::new();
    crc.update(&job.data);
    Ok(Compressed { deflate: out, crc })
}

/// A gzip writer that compresses fixed-size blocks on worker threads (see the module doc).
pub(super) struct ParallelGz<W: Write> {
    /// `None` only after `finish`.
    inner: Option<W>,
    level: u32,
    buf: Vec<u8>,
    dict: Vec<u8>,
    crc: Crc,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    pending: VecDeque<Receiver<io::Result<Compressed>>>,
    max_pending: usize,
}

impl<W: Write> ParallelGz<W> {
    pub(super) fn new(mut inner: W, level: u32, threads: usize) -> Result<Self> {
        // mtime 0, no flags, XFL 0 and OS 255 (unknown): a reproducible gzip header.
        inner
            .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])
            .context("package: write")?;
        let (tx, rx) = sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let _ = job.reply.send(compress_block(&job));
                    }
                })
                .context("package: start compression thread")?;
            workers.push(spawned);
        }
        Ok(ParallelGz {
            inner: Some(inner),
            level,
            buf: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: Crc::new(),
            jobs: Some(tx),
            workers,
            pending: VecDeque::new(),
            max_pending: threads + 2,
        })
    }

    /// Hands the buffered block to the workers; writes finished blocks to keep memory bounded.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(if last { 0 } else { BLOCK }));
        let next_dict = data[data.len().saturating_sub(DICT)..].to_vec();
        let (reply, result) = sync_channel(1);
        let job = Job {
            dict: std::mem::replace(&mut self.dict, next_dict),
            data,
            last,
            level: self.level,
            reply,
        };
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        jobs.send(job)
            .map_err(|_| io::Error::other("compression thread stopped"))?;
        self.pending.push_back(result);
        while self.pending.len() >= self.max_pending {
            self.write_next()?;
        }
        Ok(())
    }

    fn write_next(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else {
            return Ok(());
        };
        let block = result
            .recv()
            .map_err(|_| io::Error::other("compression thread stopped"))??;
        self.crc.combine(&block.crc);
        self.sink()?.write_all(&block.deflate)
    }

    fn sink(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))
    }

    /// Compresses what is left, writes the trailer (CRC-32, length mod 2^32) and returns the sink.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        let sink = self.sink()?;
        sink.write_all(&crc.to_le_bytes())?;
        sink.write_all(&len.to_le_bytes())?;
        self.stop_workers();
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let take = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BLOCK {
                self.dispatch(false)?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGz<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}
