"""The compute process: the console's torch work runs in ONE child process, so the UI process never imports torch
(about 50 MB resident instead of about 700 MB once Launch has previewed an experiment).

A screen's thread worker calls `shared().call("engine.preview:summarize_data", data)` and blocks until the
answer, as it would on the engine function itself; calls from several workers run at once (a thread each in
the child). The child is started by the first call and imports torch as its tasks need it; every call carries
the UI process's environment and working folder, so the child resolves presets, data and runs as the UI would.

Faults: an engine error comes back as the same exception with the same one-line message; any other exception
as its nearest built-in class, named in the message (`RuntimeError: OutOfMemoryError: ...`). An answer that
would import torch into the UI process is refused. A child that dies (killed, crashed) fails the calls in
flight with `ComputeCrashed`, one line, and a new child starts on the next call (calls marked `retry` are tried
once more there; listeners hear one line about it). The child ends with the UI process however that ends
(`os._exit`, a signal, a crash): it exits when its end of the socket reads end-of-file.

This module imports only the standard library and `engine.errors` at module level: the child runs it too.
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import os
import pickle
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.processes import safe_python

if TYPE_CHECKING:
    from engine.config import ExperimentConfig
    from engine.launch import RunHandle

TORCH_MODULES = frozenset({"torch", "torchvision", "timm", "functorch"})  # never unpickled in the UI process
PORTABLE_EXCEPTION_MODULES = ("builtins", "engine.errors")  # exception classes rebuilt as themselves in the UI
NICENESS = 10  # the child's scheduling priority below the UI's and the training processes'
STOP_WAIT_S = 2.0  # how long `stop` waits for the child to leave on its own before killing it
CANCEL_POLL_S = 0.05  # how often a cancellable call looks at its cancel event while it waits


class ComputeCrashed(EngineError):
    """The compute process ended while it worked on a call; the next call starts a new one."""


# --- the UI side ----------------------------------------------------------------------------------------------

@dataclass
class _Child:
    """One running child process and the calls waiting for its answers."""

    process: subprocess.Popen[bytes]
    sock: socket.socket  # the UI process's end; `shutdown` wakes the reader and tells the child to leave
    conn: Connection  # message framing over a duplicate of `sock`'s descriptor
    stderr: IO[bytes]  # what the child printed (its tracebacks): the last line explains a crash
    pending: dict[int, queue.SimpleQueue[tuple[str, Any]]] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)


class ComputeProcess:
    """A lazily started child process that runs engine functions for the UI process's thread workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _child and every child's `pending`
        self._child: _Child | None = None
        self._ids = itertools.count(1)
        self._crash: str | None = None  # how the last child ended unexpectedly, told when the next one starts
        self._listeners: list[Callable[[str], None]] = []

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first call and after a crash or `stop`)."""
        child = self._child
        return child.process.pid if child is not None else None

    def listen(self, listener: Callable[[str], None]) -> None:
        """Call `listener(line)` (from a worker thread) when a new child replaces one that died."""
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[str], None]) -> None:
        """Stop telling `listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def call(self, target: str, *args: Any, progress: Callable[..., None] | None = None,
             cancel: threading.Event | None = None, retry: bool = False, **kwargs: Any) -> Any:
        """`module:function(*args, **kwargs)` run in the child; its result, or its exception raised here. With
        `progress`, the function gets a `progress` callback whose calls arrive here, in this thread. With
        `cancel`, it gets a `cancel` event of its own, set in the child soon after this one is set here. With
        `retry` (calls without side effects), a call cut short by a crash runs once more on a new child."""
        try:
            return self._call_once(target, args, kwargs, progress, cancel)
        except ComputeCrashed:
            if not retry:
                raise
            return self._call_once(target, args, kwargs, progress, cancel)

    def _call_once(self, target: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                   progress: Callable[..., None] | None, cancel: threading.Event | None) -> Any:
        request = next(self._ids)
        message = pickle.dumps(("call", request, target, args, kwargs, progress is not None, cancel is not None,
                                dict(os.environ), _cwd()))
        answers: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        with self._lock:  # registered before the reader can see the child die: a crash always answers it
            child, notice = self._started()
            child.pending[request] = answers
        if notice is not None:
            for listener in list(self._listeners):
                listener(notice)
        try:
            with child.send_lock:
                child.conn.send_bytes(message)
        except OSError:
            pass  # the child is gone: its reader answers every pending call with the crash
        cancel_sent = False
        while True:
            watching = cancel is not None and not cancel_sent
            if cancel is not None and not cancel_sent and cancel.is_set():  # on every answer: progress may never pause
                cancel_sent = True
                try:
                    with child.send_lock:
                        child.conn.send_bytes(pickle.dumps(("cancel", request)))
                except OSError:
                    pass  # the child is gone: its reader answers the call with the crash
                continue
            try:
                kind, payload = answers.get(timeout=CANCEL_POLL_S if watching else None)
            except queue.Empty:
                continue
            if kind == "progress" and progress is not None:
                progress(*payload)
            elif kind == "done":
                return payload
            elif kind == "failed":
                raise payload

    def _started(self) -> tuple[_Child, str | None]:
        """The running child, started now if there is none (called with the lock held); with one line to tell
        when it replaces a child that died."""
        if self._child is not None:
            return self._child, None
        ours, theirs = socket.socketpair()
        stderr = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [*safe_python(), "-c", "import sys; from console.compute import serve; serve(int(sys.argv[1]))",
             str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, cwd=_cwd())
        theirs.close()  # only the child holds its end: the UI process's death is its end-of-file
        self._child = _Child(process, ours, Connection(os.dup(ours.fileno())), stderr)
        threading.Thread(target=self._read, args=(self._child,), name="compute-reader", daemon=True).start()
        notice, self._crash = self._crash, None
        if notice is not None:
            notice = f"{notice}; started a new one (pid {process.pid})"
        return self._child, notice

    def _read(self, child: _Child) -> None:
        """Hand each answer of `child` to the call waiting for it; when the child ends, fail what is left."""
        while True:
            try:
                kind, request, data = pickle.loads(child.conn.recv_bytes())
            except (EOFError, OSError):
                break
            try:
                payload = _load_torch_free(data)
            except Exception as exc:  # an answer the UI process must not (torch) or cannot read
                kind, payload = "failed", RuntimeError(f"the answer to this request cannot be read here: {exc}")
            with self._lock:
                answers = child.pending.get(request) if kind == "progress" else child.pending.pop(request, None)
            if answers is not None:
                answers.put((kind, payload))
        self._ended(child)

    def _ended(self, child: _Child) -> None:
        """The child's socket closed: fail its calls in flight; a crash is remembered for the next start."""
        try:
            code: int | None = child.process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            code = None
        crash = f"the compute process (pid {child.process.pid}) {_how_it_ended(code)}{_last_line(child.stderr)}"
        with self._lock:
            stopped = self._child is not child  # `stop` let it go on purpose
            if not stopped:
                self._child, self._crash = None, crash
            pending, child.pending = child.pending, {}
        for resource in (child.conn, child.sock, child.stderr):
            resource.close()
        error = ComputeCrashed(("the compute process was stopped" if stopped else crash)
                               + " while working on this; the next request starts a new one")
        for answers in pending.values():
            answers.put(("failed", error))

    def stop(self, *, only_if_busy: bool = False) -> None:
        """End the child (it leaves when its socket closes; killed if it has not within a moment); its calls in
        flight fail at once. With `only_if_busy`, an idle child is left running (an app closing stops a busy
        one so that it need not wait for those calls; an idle one ends with this process)."""
        with self._lock:
            child = self._child
            if child is None or (only_if_busy and not child.pending):
                return
            self._child = None
        child.sock.shutdown(socket.SHUT_RDWR)  # the child reads end-of-file; our reader wakes
        try:
            child.process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _cwd() -> str:
    """This process's working folder ('/' when it was deleted under us)."""
    try:
        return os.getcwd()
    except OSError:
        return os.sep


def _how_it_ended(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _last_line(stderr: IO[bytes]) -> str:
    """': <the last line the child printed>' (its error), or ''."""
    try:
        stderr.seek(0)
        lines = [line.strip() for line in stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except (OSError, ValueError):
        return ""
    return f" ({lines[-1][:200]})" if lines else ""


class _TorchFreeUnpickler(pickle.Unpickler):
    """Unpickles answers, refusing anything whose class lives in torch (importing it is what the child is for)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.partition(".")[0] in TORCH_MODULES:
            raise pickle.UnpicklingError(f"it holds a {module}.{name}, which would import torch into the UI process")
        return super().find_class(module, name)


def _load_torch_free(data: bytes) -> Any:
    import io

    return _TorchFreeUnpickler(io.BytesIO(data)).load()


_shared: ComputeProcess | None = None
_shared_lock = threading.Lock()


def shared() -> ComputeProcess:
    """This process's compute process (one for the whole app; stopped when the interpreter exits)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ComputeProcess()
            atexit.register(_shared.stop)
        return _shared


# --- the child side -------------------------------------------------------------------------------------------

def serve(fd: int) -> None:
    """The child's main loop: run each call in a thread of its own; leave at once when the UI process's end of
    the socket closes (the UI process exited, however it exited)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the UI's to handle
    try:  # previews are background work: a run training meanwhile gets the cores first
        os.nice(NICENESS)
    except OSError:
        pass
    conn = Connection(fd)
    send_lock = threading.Lock()
    applied = dict(os.environ)
    cancels: dict[int, threading.Event] = {}  # the cancel events of the calls running (request -> event)
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            os._exit(0)  # no interpreter teardown: torch's takes seconds, and nothing here needs saving
        if message[0] == "cancel":
            event = cancels.get(message[1])
            if event is not None:
                event.set()
            continue
        _, request, target, args, kwargs, wants_progress, wants_cancel, env, cwd = message
        applied = _follow_context(applied, env, cwd)
        if wants_cancel:
            kwargs = {**kwargs, "cancel": cancels.setdefault(request, threading.Event())}
        threading.Thread(target=_run_call, args=(conn, send_lock, request, target, args, kwargs, wants_progress,
                                                 cancels), daemon=True).start()


def _follow_context(applied: dict[str, str], env: dict[str, str], cwd: str) -> dict[str, str]:
    """Take the UI process's environment and working folder (what changed since the last call)."""
    for key in applied.keys() - env.keys():
        os.environ.pop(key, None)
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    if _cwd() != cwd:
        try:
            os.chdir(cwd)
        except OSError:
            pass  # a folder gone since: relative paths fail as they would in the UI process
    return env


def _run_call(conn: Connection, send_lock: threading.Lock, request: int, target: str, args: tuple[Any, ...],
              kwargs: dict[str, Any], wants_progress: bool, cancels: dict[int, threading.Event]) -> None:
    """Run one call and send its answer (and its progress on the way); forget its cancel event after."""

    def send(kind: str, payload: Any) -> None:
        try:
            data = pickle.dumps(payload)
        except Exception as exc:
            kind, data = "failed", pickle.dumps(RuntimeError(f"{target} answered what cannot be sent: {exc}"))
        with send_lock:
            conn.send_bytes(pickle.dumps((kind, request, data)))

    try:
        if wants_progress:
            kwargs = {**kwargs, "progress": lambda *values: send("progress", values)}
        module, _, name = target.partition(":")
        result = getattr(importlib.import_module(module), name)(*args, **kwargs)
    except BaseException as exc:
        if not isinstance(exc, EngineError):
            traceback.print_exc()  # into the child's log: a bug's whole story, for whoever debugs it
        send("failed", portable_exception(exc))
    else:
        send("done", result)
    finally:
        cancels.pop(request, None)


def portable_exception(exc: BaseException) -> BaseException:
    """`exc` as the UI process can rebuild it without importing anything new: itself when its class is built in
    or one of engine.errors; else its nearest such base class, with the same message (engine errors) or the
    message led by the class name (anything else)."""
    kind = type(exc)
    if kind.__module__ in PORTABLE_EXCEPTION_MODULES:
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:
            pass
    base = next(c for c in kind.__mro__[1:] if c.__module__ in PORTABLE_EXCEPTION_MODULES)
    if issubclass(base, EngineError):
        return base(str(exc))
    return base(f"{kind.__name__}: {exc}") if base is not BaseException else RuntimeError(f"{kind.__name__}: {exc}")


# --- what the Launch screen runs here (torch is imported by the engine functions they call) --------------------

def resolve_composition(experiment: str, overrides: list[str]) -> tuple[ExperimentConfig, str, dict[str, str | None]]:
    """The composition checked and resolved: its config, its YAML and the preset each section names."""
    from engine.presets import resolve_experiment, resolved_yaml
    from engine.preview import section_presets

    config = resolve_experiment(experiment, overrides)
    return config, resolved_yaml(config), section_presets(experiment)


def field_problems(experiment: str, overrides: list[str], keys: list[str]) -> dict[str, str]:
    """For a composition that does not resolve: each of its overrides of `keys` that is wrong on its own (with
    the section swaps), and the engine's error for it in the app's words. Empty when the swaps alone fail."""
    from console.screens.launch_composition import SECTION_KINDS, override_key, without_source
    from engine.presets import resolve_experiment

    sections = [text for text in overrides if override_key(text) in SECTION_KINDS]
    try:
        resolve_experiment(experiment, sections)
    except EngineError:
        return {}
    problems = {}
    for text in overrides:
        key = override_key(text)
        if key in keys:
            try:
                resolve_experiment(experiment, [*sections, text])
            except EngineError as exc:
                problems[key] = without_source(str(exc), [*sections, text])
    return problems


def prepare_launch(experiment: str, overrides: list[str], runs_root: Path,
                   finetune_from: str | None) -> tuple[Path, str | None]:
    """What `engine.launch.launch_run` (or `launch_finetune`) does before its training process starts: the plan,
    the pre-flight checks and the new run folder. Returns the folder and the run it fine-tunes (or None)."""
    from engine.launch import prepare_run
    from engine.presets import resolve_experiment
    from engine.runner import finetune_config, plan_finetune

    if finetune_from is None:
        return prepare_run(resolve_experiment(experiment, overrides), runs_root), None
    plan = plan_finetune(runs_root, finetune_from, experiment, overrides)  # the same plan as `finetune`
    return prepare_run(finetune_config(plan.source, plan.config), runs_root, parent=plan.parent), plan.parent


def start_prepared(run_dir: Path, parent: str | None) -> RunHandle:
    """Start training a folder `prepare_launch` made, from the UI process (which then holds the training
    process: its exit code and last line reach Monitor); `engine.launch.launch_run`'s second half."""
    from engine.launch import _spawn
    from engine.runs import read_status, write_status

    handle = _spawn(run_dir, ["start", str(run_dir)] + (["--parent", parent] if parent else []), 1)
    status = read_status(run_dir)
    if status.get("state") == "starting":  # the child has not written its own status yet
        write_status(run_dir, {**status, "pid": handle.pid})
    return handle


def share_composition(experiment: str, overrides: list[str], *, preset: str | None = None,
                      overwrite: bool = False, export: Path | None = None) -> str:
    """Save the composition as the user's experiment preset `preset`, or write it resolved to `export`; what was
    done, in one line."""
    import dataclasses

    from console.screens.launch_composition import override_key, save_user_preset
    from engine.presets import resolve_experiment, resolved_yaml

    config = resolve_experiment(experiment, overrides)
    if preset is not None:
        named = any(override_key(text) == "name" for text in overrides)
        target = save_user_preset(config if named else dataclasses.replace(config, name=preset), preset, overwrite)
        return f"saved as experiment preset {preset}: {target}"
    if export is None:
        raise ValueError("share_composition: give `preset` or `export`")
    export.parent.mkdir(parents=True, exist_ok=True)
    export.write_text(resolved_yaml(config), encoding="utf-8")
    return f"wrote {export}"


# --- what the Presets screen runs here (composing an experiment checks its model and augmentations: torch) ------

def validate_preset(path: Path, kind: str | None) -> str:
    """The kind of the valid preset file `path` (engine.presets.validate_file); its error otherwise."""
    from engine.presets import validate_file

    return validate_file(path, kind)[0]


def preset_export_text(kind: str, path: Path, file_name: str | None) -> str:
    """What the Presets screen's export writes (as `presets export`): an experiment fully resolved, a sweep with the
    presets it names, any other preset as written."""
    if kind == "experiment":
        from engine.presets import resolve_experiment, resolved_yaml

        return resolved_yaml(resolve_experiment(str(path)))
    if kind == "sweep":
        from engine.sweep_bundle import export_sweep

        return export_sweep(str(path), file_name=file_name)
    return path.read_text(encoding="utf-8")

