//! [`Shards`]: the processes the samples are split across, and the fixed-order sum.

use crate::error::{Error, Result};
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Threading;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The contiguous block of `0..m` owned by `rank` out of `size`: the first `m mod size`
/// blocks have `⌈m/size⌉` items, the others `⌊m/size⌋`. The blocks are in rank order
/// and cover `0..m` exactly once. `size = 0` or `rank ≥ size` give an empty range.
///
/// ```
/// use natgrad::distributed::block;
/// assert_eq!(block(10, 3, 0), 0..4);
/// assert_eq!(block(10, 3, 1), 4..7);
/// assert_eq!(block(10, 3, 2), 7..10);
/// ```
pub fn block(m: usize, size: usize, rank: usize) -> Range<usize> {
    if size == 0 || rank >= size {
        return 0..0;
    }
    let (base, extra) = (m / size, m % size);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start..start + len
}

/// The communicator and the reduction scratch, behind the mutex of [`Shards`].
struct Comm {
    comm: SimpleCommunicator,
    /// Receive buffer of the reduce-scatter (`size` chunks of `⌈len/size⌉`).
    scratch: Vec<f64>,
    stats: CommStats,
}

/// What [`Shards::sum`] has done so far on this rank: calls, values summed, and the wall
/// time spent in them (communication and the rank-order additions, including the time
/// waiting for slower ranks).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    /// Number of sums.
    pub sums: u64,
    /// Total length of the vectors summed.
    pub values: u64,
    /// Bytes this rank sent (and received) for them.
    pub bytes_sent: u64,
    /// Wall time inside [`Shards::sum`], in seconds.
    pub seconds: f64,
}

// SAFETY: `SimpleCommunicator` is a plain MPI handle (a pointer in OpenMPI), so it is
// neither `Send` nor `Sync`. MPI itself allows calls from any thread when it was
// initialised with `Threading::Serialized` or `Threading::Multiple` as long as calls are
// not concurrent; `Shards::new` refuses any lower level, and every use of the handle goes
// through the mutex in `Shards`, which serialises them.
unsafe impl Send for Comm {}

/// The processes the sample points are sharded across: an MPI communicator (a private
/// duplicate of the one given, so that the solver's messages never mix with the
/// application's), its rank and size.
///
/// Its one numerical operation is [`Shards::sum`], the sum of a vector over ranks in a
/// fixed order, so that every rank gets the bitwise same result whatever the timing.
/// Cloning is cheap (a shared handle) and not collective.
#[derive(Clone)]
pub struct Shards {
    comm: Arc<Mutex<Comm>>,
    rank: usize,
    size: usize,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl Shards {
    /// Duplicates `comm` (collective: every rank of `comm` must call it). Fails with
    /// [`Error::InvalidSetting`] when MPI is not initialised or was initialised below
    /// `Threading::Serialized` (use `mpi::initialize_with_threading(Threading::Serialized)`).
    pub fn new<C: Communicator>(comm: &C) -> Result<Self> {
        if !mpi::environment::is_initialized() || mpi::environment::is_finalized() {
            return Err(Error::InvalidSetting(
                "Shards: MPI is not initialised; call \
                 `mpi::initialize_with_threading(Threading::Serialized)` first"
                    .into(),
            ));
        }
        match mpi::environment::threading_support() {
            Threading::Serialized | Threading::Multiple => {}
            level => {
                return Err(Error::InvalidSetting(format!(
                    "Shards: MPI was initialised with {level:?}; the sharded problem may be \
                     used from any thread, so it needs at least Threading::Serialized \
                     (`mpi::initialize_with_threading(Threading::Serialized)`)"
                )))
            }
        }
        let comm = comm.duplicate();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        Ok(Self {
            comm: Arc::new(Mutex::new(Comm {
                comm,
                scratch: Vec::new(),
                stats: CommStats::default(),
            })),
            rank,
            size,
        })
    }

    /// The shards of `MPI_COMM_WORLD` (collective).
    pub fn world() -> Result<Self> {
        Self::new(&SimpleCommunicator::world())
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0 (the rank that prints and observes).
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// This rank's contiguous block of `m` samples (see [`block`]).
    pub fn block(&self, m: usize) -> Range<usize> {
        block(m, self.size, self.rank)
    }

    /// Replaces `v` by `Σ_r v_r`, the sum over ranks **in rank order**, identical on every
    /// rank (collective: every rank calls it with the same length).
    ///
    /// A reduce-scatter and an all-gather, both with the mpi crate's collectives: rank `j`
    /// receives chunk `j` (of `len/size` entries) from every rank, adds the chunks in rank
    /// order `((v₀ + v₁) + v₂) + …`, and the summed chunks are gathered back on every
    /// rank. Each chunk is summed once, so all ranks hold the same bits, and the order
    /// does not depend on timing. Every rank sends and receives `2·(size−1)/size · len`
    /// values (`8·len` bytes at two ranks), as a bandwidth-optimal allreduce does.
    pub fn sum(&self, v: &mut [f64]) {
        let size = self.size;
        if size <= 1 {
            return;
        }
        let n = v.len();
        let counts: Vec<Count> = (0..size)
            .map(|j| block(n, size, j).len() as Count)
            .collect();
        let displs: Vec<Count> = (0..size)
            .map(|j| block(n, size, j).start as Count)
            .collect();
        let mine = block(n, size, self.rank).len();
        let mut guard = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        let start = Instant::now();
        let Comm {
            comm,
            scratch,
            stats,
        } = &mut *guard;
        if scratch.len() < size * mine {
            scratch.resize(size * mine, 0.0);
        }
        let recv = &mut scratch[..size * mine];
        {
            let send = Partition::new(&*v, &counts[..], &displs[..]);
            let rc: Vec<Count> = vec![mine as Count; size];
            let rd: Vec<Count> = (0..size).map(|i| (i * mine) as Count).collect();
            let mut into = PartitionMut::new(&mut *recv, rc, rd);
            comm.all_to_all_varcount_into(&send, &mut into);
        }
        let (acc, rest) = recv.split_at_mut(mine);
        for chunk in rest.chunks_exact(mine.max(1)).take(size - 1) {
            acc.iter_mut().zip(chunk).for_each(|(a, c)| *a += c);
        }
        let mut back = PartitionMut::new(v, &counts[..], &displs[..]);
        comm.all_gather_varcount_into(&*acc, &mut back);
        stats.sums += 1;
        stats.values += n as u64;
        stats.bytes_sent += (8 * (2 * (n - mine))) as u64;
        stats.seconds += start.elapsed().as_secs_f64();
    }

    /// The statistics of [`Shards::sum`] on this rank so far.
    pub fn stats(&self) -> CommStats {
        self.comm.lock().unwrap_or_else(|e| e.into_inner()).stats
    }

    /// The sum over ranks of one number (see [`Shards::sum`]).
    pub fn sum_scalar(&self, x: f64) -> f64 {
        let mut v = [x];
        self.sum(&mut v);
        v[0]
    }

    /// Gathers `k` integers from every rank, in rank order (`size·k` values; collective).
    pub fn gather_u64(&self, mine: &[u64]) -> Vec<u64> {
        let mut all = vec![0u64; mine.len() * self.size];
        let guard = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        guard.comm.all_gather_into(mine, &mut all[..]);
        all
    }
}
