"""A small stage runner with stage-level resume.

Why not a workflow engine: the study is a straight line of a dozen steps, each a few
subprocesses (``tools/train.py`` ...) writing into its own folder. What matters is that

* a finished stage is never redone: its folder holds a done-marker (``.stage_done.json``),
  written last and atomically, with a signature of what the stage ran;
* an interrupted stage (folder without a marker) restarts cleanly: its folder is deleted
  first, so no half-written checkpoint or log is ever picked up;
* a stage whose definition changed (other iterations, another seed, an edited config: the
  study puts config digests in ``Stage.spec``) or whose inputs were redone (an upstream
  marker changed) is redone, and so is everything after it;
* the console shows one progress line per stage and a heartbeat while it trains; the full
  output of every command goes to ``<stage>/stage.log``;
* with ``jobs`` > 1, stages whose dependencies are finished run side by side (each its own
  subprocesses, each seeded, so the results do not depend on the schedule); a failure lets
  the running stages finish, starts no new one, and is then reported.
"""
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Union

MARKER = '.stage_done.json'
_ITER_RE = re.compile(r'Iter\((train|val|test)\)\s*\[\s*(\d+)/(\d+)\]')
_EPOCH_RE = re.compile(r'Epoch\((train|val|test)\)\s*\[\s*(\d+)\]\[\s*(\d+)/(\d+)\]')
_LOSS_RE = re.compile(r'\bloss: ([-\d.eE+naif]+)')


class StageError(RuntimeError):
    """A stage's command failed; the message names the stage, its log and the resume."""


@dataclass
class Command:
    """One step of a stage: ``argv`` run as a subprocess (``sys.executable`` prepended when
    it starts with a ``.py`` file) or ``func(stage_dir)`` called in this process."""
    argv: Optional[Sequence[str]] = None
    func: Optional[Callable[[str], None]] = None
    label: str = ''

    def describe(self) -> str:
        if self.argv is not None:
            return ' '.join(str(a) for a in self.argv)
        return f'{self.label or getattr(self.func, "__name__", "python")}()'


@dataclass
class Stage:
    """A named step of the study with its own folder ``<root>/<name>``."""
    name: str
    title: str
    commands: List[Command]
    deps: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)  # relative to the stage folder
    spec: Dict = field(default_factory=dict)           # anything else defining the stage

    def signature(self, dep_markers: Dict[str, str]) -> str:
        """Hash of the commands, the spec and the exact runs of the dependencies (each
        marker's run id changes whenever a stage is redone)."""
        payload = json.dumps(dict(commands=[c.describe() for c in self.commands],
                                  spec=self.spec, outputs=self.outputs,
                                  deps={d: dep_markers.get(d, '') for d in self.deps}),
                             sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _write_json_atomic(path: str, obj) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_marker(stage_dir: str) -> Optional[Dict]:
    path = osp.join(stage_dir, MARKER)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 60}m{seconds % 60:02d}s' if seconds >= 60 else f'{seconds}s'


class StageRunner:
    """Run stages in order under ``root``; see the module docstring.

    Args:
        root: the study's work dir; stage ``s`` lives in ``root/s``.
        cwd: working directory of the subprocesses (where relative data paths resolve).
        env: extra environment for the subprocesses.
        verbose: also echo every line of the subprocesses.
        heartbeat_s: at most one progress line per this many seconds while a command runs.
        print_fn: where progress lines go.
        jobs: how many stages may run at once.
    """

    def __init__(self, root: str, cwd: Optional[str] = None, env: Optional[Dict] = None,
                 verbose: bool = False, heartbeat_s: float = 20.0,
                 print_fn: Callable[[str], None] = print, jobs: int = 1):
        if jobs < 1:
            raise ValueError(f'jobs must be at least 1, got {jobs}')
        self.root = osp.abspath(root)
        self.cwd = osp.abspath(cwd or root)
        self.env = dict(env or {})
        self.verbose = verbose
        self.heartbeat_s = heartbeat_s
        self.print = print_fn
        self.jobs = jobs
        self._live = set()  # running subprocesses, killed if the study is interrupted
        self._lock = threading.Lock()

    def stage_dir(self, name: str) -> str:
        return osp.join(self.root, name)

    def run(self, stages: Sequence[Stage]) -> Dict[str, Dict]:
        """Run (or skip) every stage; return each stage's marker (in the stages' order)."""
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f'stage names must be unique: {names}')
        position = {name: i for i, name in enumerate(names, 1)}
        for stage in stages:
            missing = [d for d in stage.deps if position.get(d, len(names) + 1) >=
                       position[stage.name]]
            if missing:
                raise ValueError(f'stage {stage.name!r} depends on {missing}, which do not run '
                                 'before it')
        os.makedirs(self.root, exist_ok=True)
        markers, started = {}, time.time()
        pending, running, errors = list(stages), {}, []
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            try:
                while pending or running:
                    self._start_ready(pending, running, markers, errors, pool, started,
                                      position, len(names))
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        stage = running.pop(future)
                        try:
                            markers[stage.name] = future.result()
                        except Exception as exc:  # noqa: BLE001  (reported after the others)
                            if not errors and running:
                                self.print(f'{stage.name} failed; waiting for the '
                                           f'{len(running)} running stage(s) to finish')
                            errors.append(exc)
            except BaseException:
                self._kill_live()
                raise
        if errors:
            raise errors[0]
        return {name: markers[name] for name in names if name in markers}

    def _start_ready(self, pending, running, markers, errors, pool, started, position, total):
        """Skip finished stages and start ready ones (dependencies done) up to ``jobs``,
        in the stages' order."""
        progressed = True
        while progressed and not errors:
            progressed = False
            for stage in list(pending):
                if len(running) >= self.jobs:
                    return
                if any(d not in markers for d in stage.deps):
                    continue
                pending.remove(stage)
                dep_sigs = {d: markers[d]['signature'] + markers[d].get('run_id', '')
                            for d in stage.deps}
                signature = stage.signature(dep_sigs)
                head = f'[{position[stage.name]}/{total}] {stage.name}:'
                marker = read_marker(self.stage_dir(stage.name))
                progressed = True
                if marker is not None and marker.get('signature') == signature and \
                        self._outputs_present(stage):
                    self.print(f'{head} done earlier ({_fmt_seconds(marker["seconds"])}), '
                               'skipped')
                    markers[stage.name] = marker
                    break  # stages waiting for this one may be ready now: scan again
                if marker is not None:
                    why = 'its definition or inputs changed' if marker.get('signature') != \
                        signature else 'some outputs are missing'
                    self.print(f'{head} redoing it: {why}')
                elif osp.isdir(self.stage_dir(stage.name)):
                    self.print(f'{head} an earlier run stopped inside it; starting it afresh')
                running[pool.submit(self._run_stage, stage, signature, head, started)] = stage

    def _kill_live(self):
        with self._lock:
            for proc in list(self._live):
                proc.kill()

    def _outputs_present(self, stage: Stage) -> bool:
        return all(osp.exists(osp.join(self.stage_dir(stage.name), o)) for o in stage.outputs)

    def _run_stage(self, stage: Stage, signature: str, head: str, study_start: float) -> Dict:
        folder = self.stage_dir(stage.name)
        if osp.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        log_path = osp.join(folder, 'stage.log')
        self.print(f'{head} {stage.title}  (log: {osp.relpath(log_path, self.cwd)})')
        t0 = time.time()
        timings = []
        with open(log_path, 'a') as log:
            for command in stage.commands:
                c0 = time.time()
                log.write(f'$ {command.describe()}\n')
                log.flush()
                cpu = None
                if command.argv is not None:
                    cpu = self._run_subprocess(stage, command, log, log_path, head)
                else:
                    try:
                        command.func(folder)
                    except Exception as exc:
                        log.write(f'{type(exc).__name__}: {exc}\n')
                        raise StageError(f'stage {stage.name!r} failed in '
                                         f'{command.describe()}: {type(exc).__name__}: {exc}\n'
                                         f'Fix the cause and run the same command again: '
                                         f'finished stages are kept.') from exc
                timings.append(dict(command=command.label or command.describe(),
                                    seconds=round(time.time() - c0, 2)))
                if cpu is not None:  # wall time depends on the machine's load, CPU time less
                    timings[-1]['cpu_seconds'] = round(cpu, 2)
        missing = [o for o in stage.outputs if not osp.exists(osp.join(folder, o))]
        if missing:
            raise StageError(f'stage {stage.name!r} finished but did not write {missing} (see '
                             f'{log_path})')
        seconds = time.time() - t0
        marker = dict(stage=stage.name, signature=signature, run_id=uuid.uuid4().hex,
                      seconds=round(seconds, 2), finished=time.strftime('%Y-%m-%dT%H:%M:%S'),
                      commands=timings,
                      spec=stage.spec)
        _write_json_atomic(osp.join(folder, MARKER), marker)  # last: the stage is complete
        self.print(f'{head} done in {_fmt_seconds(seconds)} '
                   f'(study so far {_fmt_seconds(time.time() - study_start)})')
        return marker

    def _run_subprocess(self, stage: Stage, command: Command, log, log_path: str, head: str):
        argv = [str(a) for a in command.argv]
        if argv[0].endswith('.py'):
            argv = [sys.executable] + argv
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        env.update({k: str(v) for k, v in self.env.items()})
        proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        with self._lock:
            self._live.add(proc)
        tail: List[str] = []
        last_beat, t0 = time.time(), time.time()
        try:
            for line in proc.stdout:
                log.write(line)
                tail = (tail + [line])[-40:]
                if self.verbose:
                    self.print('    ' + line.rstrip())
                    continue
                now = time.time()
                progress = self._progress(line)
                if progress and now - last_beat >= self.heartbeat_s:
                    self.print(f'{head}   {progress}, {_fmt_seconds(now - t0)}')
                    last_beat = now
            _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU time too
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            log.flush()
            with self._lock:
                self._live.discard(proc)
        if code != 0:
            raise StageError(
                f'stage {stage.name!r} failed: {" ".join(argv)} exited with {code}.\n'
                f'Last lines of {log_path}:\n' + ''.join(tail[-25:]) +
                'Fix the cause and run the same command again: finished stages are kept.')
        return cpu

    @staticmethod
    def _progress(line: str) -> Optional[str]:
        match = _ITER_RE.search(line)
        if match:
            text = f'{match.group(1)} iter {match.group(2)}/{match.group(3)}'
        else:
            match = _EPOCH_RE.search(line)
            if not match:
                return None
            text = (f'{match.group(1)} epoch {match.group(2)}, iter '
                    f'{match.group(3)}/{match.group(4)}')
        loss = _LOSS_RE.search(line)
        return text + (f', loss {loss.group(1)}' if loss else '')


def command(argv: Union[Sequence[str], None] = None, func=None, label: str = '') -> Command:
    """Shorthand for :class:`Command`."""
    return Command(argv=argv, func=func, label=label)
