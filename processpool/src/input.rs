//! The input of an `imap`, read lazily: [`Input`] pulls one chunk at a time from the
//! caller's iterator when the [`IMap`](crate::IMap) asks for it (as the caller reads
//! results), encodes it and queues it at the pool.
//!
//! While an input is open, a closed pool keeps its workers for the chunks still to come
//! (multiprocessing's task handler also goes on reading an `imap`'s iterable after
//! `close()`).

use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::function::Call;
use crate::pool::{Shared, Sink, decode, encode};
use crate::result::{Arrivals, ChunkSource, Pulled};

/// The input of an `imap` that the pool refused at once (it was closed): it yields its
/// one error.
pub(crate) struct Refused(pub(crate) TaskError);

impl ChunkSource for Refused {
    fn pull(&mut self) -> Pulled {
        Pulled::Failed(self.0.clone())
    }
}

/// One imap's input, open at the pool until it is dropped.
pub(crate) struct Input<A, R, I> {
    shared: Rc<Shared>,
    items: I,
    call: Result<Call, TaskError>,
    chunksize: usize,
    /// The number the next chunk gets (its place in the input).
    next_chunk: usize,
    arrivals: Rc<Arrivals<R>>,
    _argument: std::marker::PhantomData<fn(A)>,
}

impl<A, R, I> Input<A, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    pub(crate) fn open(
        shared: Rc<Shared>,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        arrivals: Rc<Arrivals<R>>,
    ) -> Input<A, R, I> {
        shared.input_opened();
        Input {
            shared,
            items,
            call: Call::chunk(f),
            chunksize: chunksize.max(1),
            next_chunk: 0,
            arrivals,
            _argument: std::marker::PhantomData,
        }
    }

    /// The next chunk's items from the caller's iterator; a panic there (but not a kill
    /// of the reading greenlet, which passes through) is the input's error. A chunk the
    /// iterator panicked in the middle of is dropped, as multiprocessing drops it.
    fn read_chunk(&mut self) -> Result<Vec<A>, TaskError> {
        let (items, chunksize) = (&mut self.items, self.chunksize);
        verdant_hub::catch_panic(|| items.take(chunksize).collect())
            .map_err(|payload| TaskError::InputPanicked(verdant_hub::panic_message(&*payload)))
    }

    /// Queues `items` as the next chunk; its outcome goes to the arrivals.
    fn submit(&mut self, items: &[A]) {
        let chunk = self.next_chunk;
        self.next_chunk += 1;
        let arrivals = self.arrivals.clone();
        let sink: Sink = Box::new(move |outcome: Result<&[u8], TaskError>| {
            arrivals.deliver(chunk, outcome.and_then(decode::<Vec<R>>));
        });
        match self.call.clone().and_then(|call| encode(call, items)) {
            Ok(task) => self.shared.enqueue(task, sink),
            Err(error) => sink(Err(error)),
        }
    }
}

impl<A, R, I> ChunkSource for Input<A, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    fn pull(&mut self) -> Pulled {
        if let Some(refusal) = self.shared.refusal_of_open_input() {
            return Pulled::Failed(refusal);
        }
        match self.read_chunk() {
            Ok(items) if items.is_empty() => Pulled::End,
            Ok(items) => {
                self.submit(&items);
                Pulled::Chunk(items.len())
            }
            Err(error) => Pulled::Failed(error),
        }
    }
}

impl<A, R, I> Drop for Input<A, R, I> {
    fn drop(&mut self) {
        self.shared.input_closed();
    }
}
