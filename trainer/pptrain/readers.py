"""The reader processes of a streaming loader (``--workers N`` > 0): N processes per rank,
started from a fork server on the loader's first epoch and kept for the loader's life
(:class:`Readers`). Each epoch sends every reader its ReadPlan and the training process's
environment; a reader runs the plan's pipeline (stages.py) and writes its pool outputs, a whole
number of pieces at a time, into a ring of SLOTS chunks in shared memory (slots.py), which the
training process copies out and hands back. So an epoch starts no process and pickles no
samples, and a reader holds at most SLOTS x CHUNK_BYTES of output, its shuffle pool and the
shards it reads.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
import weakref
from collections import deque
from multiprocessing.shared_memory import SharedMemory
from typing import Iterator

from .errors import OptionError
from .loader import Loaded
from .slots import Slots
from .stages import PASS_END, Failure, ReadPlan, reader_items

SLOTS = 3  # chunks a reader may have written that the training process has not received yet


class _Superseded(Exception):
    """The training process sent a command (a new epoch, idle, stop), not a freed slot or a
    request for more: the epoch is over."""


def _reader_main(conn, shm_name: str, slots: Slots, handler) -> None:
    """A reader process: for each epoch the training process sends, its pipeline's outputs into
    the ring, a message per chunk, then a message that ends the epoch (a Failure before it, if a
    shard failed). At the end of a training pass it waits until the training process has asked
    for a chunk beyond those sent. Any command but a freed slot or such a request arriving while
    it works ends the epoch early."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    shm = SharedMemory(shm_name)
    free = deque(range(SLOTS))
    try:
        command = conn.recv()
        while command[0] != "stop":
            if command[0] == "free":
                free.append(command[1])
            if command[0] != "epoch":
                command = conn.recv()
                continue
            _, gen, plan, environ = command
            command, sent, wanted = None, 0, 0
            os.environ.clear()  # the training process's environment as the epoch began (credentials set late)
            os.environ.update(environ)

            def take(block: bool) -> None:
                """Handle the training process's messages: a freed slot, a request for the chunk
                numbered ``wanted``; anything else ends the epoch."""
                nonlocal command, wanted
                while block or conn.poll():
                    c = conn.recv()
                    if c[0] == "free":
                        free.append(c[1])
                    elif c[0] == "more":
                        wanted = max(wanted, c[2]) if c[1] == gen else wanted
                    else:
                        command = c
                        raise _Superseded
                    block = False

            items = reader_items(plan, handler)
            try:
                for item in items:
                    if item is PASS_END:
                        # Another pass only when asked for: the epoch usually ends before it.
                        while wanted < sent:
                            take(block=True)
                        continue
                    if isinstance(item, Failure):
                        conn.send(("failure", gen, item))
                        continue
                    for at in range(0, len(item), slots.samples):
                        take(block=False)
                        while not free:
                            take(block=True)
                        slot = free.popleft()
                        conn.send(("chunk", gen, slot, slots.write(shm.buf, slot, item, at)))
                        sent += 1
                conn.send(("end", gen))
            except _Superseded:
                pass
            except Exception as e:  # a bug, not the data's fault: raised in the training process, traceback included
                _send_error(conn, gen, e)
            finally:
                items.close()
            command = command or conn.recv()
    except (EOFError, OSError):
        return  # the training process is gone
    finally:
        shm.close()


def _send_error(conn, gen: int, e: Exception) -> None:
    message = f"{type(e).__name__} in a streaming reader:\n{traceback.format_exc()}"
    try:
        conn.send(("error", gen, type(e), message))
    except Exception:  # an exception type that does not pickle
        conn.send(("error", gen, RuntimeError, message))


def reader_context() -> mp.context.BaseContext:
    """Readers start from a fork server (a fresh single-threaded process that has imported this
    module and the main script), never by forking the training process: by its first epoch a
    rank runs threads (gloo's, zarr's I/O loop, tqdm's monitor), and a fork copies any lock one
    of them holds at that instant. A reader forked that way once hung inside ``os.fork()`` in a
    two-rank run. The main script (a ``pptrain`` console script, a user's training script) is
    imported once there, as multiprocessing does by default, not once per reader."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")  # macOS and Windows: no fork server; spawn is as safe
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


class Readers:
    """One loader's reader processes: started once, fed an epoch at a time, stopped when the
    loader is dropped (or the process exits)."""

    def __init__(self, workers: int, slots: Slots, handler):
        _check_shared_memory(workers * SLOTS * slots.size, workers)
        ctx = reader_context()
        self.slots, self.gen = slots, 0
        self.procs, self.conns, self.shms = [], [], []
        self._stop = weakref.finalize(self, _stop_readers, self.procs, self.conns, self.shms)
        for w in range(workers):
            self.shms.append(SharedMemory(create=True, size=SLOTS * slots.size))
            here, there = ctx.Pipe()
            self.conns.append(here)
            p = ctx.Process(target=_reader_main, args=(there, self.shms[-1].name, slots, handler), name=f"pptrain-reader-{w}", daemon=True)
            p.start()
            self.procs.append(p)
            there.close()

    def epoch(self, plans: list[ReadPlan], pin: bool) -> list[Iterator[Loaded | Failure]]:
        """Start an epoch in every reader (ending the one before); each reader's chunks, copied
        out of its ring (into pinned memory with ``pin``)."""
        self.gen += 1
        environ = dict(os.environ)
        for w, plan in enumerate(plans):
            self._send(w, ("epoch", self.gen, plan, environ))
        return [self._chunks(w, self.gen, pin) for w in range(len(plans))]

    def idle(self, gen: int) -> None:
        """Epoch ``gen`` needs nothing more: the readers stop working on it."""
        if gen == self.gen:
            for conn in self.conns:
                try:
                    conn.send(("idle", gen))
                except OSError:  # a reader that died: the error that says so is on its way
                    pass

    def close(self) -> None:
        self._stop()

    def _chunks(self, w: int, gen: int, pin: bool) -> Iterator[Loaded | Failure]:
        conn, received = self.conns[w], 0
        while True:
            if gen != self.gen:
                raise RuntimeError("a later epoch of this streaming loader has started")
            if not conn.poll():  # nothing here: ask for the next chunk (a reader at a pass end waits for this)
                self._send(w, ("more", gen, received))
            kind, g, *rest = self._recv(w)
            if kind == "chunk":  # a chunk of an epoch stopped early is only handed back
                chunk = self.slots.read(self.shms[w].buf, rest[0], rest[1], pin) if g == gen else None
                self._send(w, ("free", rest[0]))
                if chunk is not None:
                    received += 1
                    yield chunk
            elif g != gen:
                continue
            elif kind == "end":
                return
            elif kind == "failure":
                yield rest[0]
                return
            else:  # "error": a bug in the reader, raised here as DataLoader did, its traceback in the message
                error_type, message = rest
                try:
                    error = error_type(message)
                except Exception:
                    error = RuntimeError(message)
                raise error

    def _send(self, w: int, message: tuple) -> None:
        try:
            self.conns[w].send(message)
        except OSError:
            raise self._died(w) from None

    def _recv(self, w: int) -> tuple:
        conn, p = self.conns[w], self.procs[w]
        while not conn.poll(1.0):
            if not p.is_alive() and not conn.poll():
                raise self._died(w)
        try:
            return conn.recv()
        except (EOFError, OSError):
            raise self._died(w) from None

    def _died(self, w: int) -> RuntimeError:
        p = self.procs[w]
        p.join(1.0)
        hint = f" (out of shared memory? {SHM} is full)" if p.exitcode == -signal.SIGBUS else ""
        return RuntimeError(f"streaming reader {w} (pid {p.pid}) exited unexpectedly (exit code {p.exitcode}){hint}")


SHM = "/dev/shm"  # where Linux keeps SharedMemory blocks


def _check_shared_memory(need: int, workers: int) -> None:
    """Refuse readers whose rings would not fit in the shared memory left (a container's
    /dev/shm is often 64 MiB): a reader writing past it dies of SIGBUS."""
    try:
        st = os.statvfs(SHM)
    except OSError:
        return  # not Linux: shared memory is not a filesystem of its own
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise OptionError("--workers", f"{workers} streaming readers need {need / 2**20:.0f} MiB of shared memory, and {SHM} has "
                                       f"{free / 2**20:.0f} MiB free: raise it (docker run --shm-size), or use fewer --workers (0: none)")  # fmt: skip


def _stop_readers(procs, conns, shms) -> None:
    for conn in conns:
        try:
            conn.send(("stop",))
        except OSError:
            pass
    for p in procs:
        p.join(2.0)
        if p.is_alive():
            p.terminate()
            p.join()
    for conn in conns:
        conn.close()
    for shm in shms:
        try:
            shm.close()
        except BufferError:  # a view still alive (an exception's frame): the mapping goes with the process
            pass
        shm.unlink()
