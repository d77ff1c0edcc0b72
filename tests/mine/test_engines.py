"""The engines `codemt mine` stages sources with, and what survives their faults: the Ray
engine gives the local engine's corpus; a worker killed mid-run (Ray: its task runs
again; local: the run stops and a rerun resumes), a full disk, and a missing engine lose
nothing and double nothing."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from codemt.cli import main
from codemt.corpus import SPLITS, shard_paths
from codemt.mine import cluster, pipeline, shards, staging
from codemt.mine.pipeline import mine
from codemt.mine.settings import MineSettings
from codemt.mine.staging import (
    TASKS_AHEAD_PER_WORKER,
    Stage,
    _in_worker_processes,
    _Task,
    stage_source,
    stage_sources,
    worker_pool,
)
from codemt.source.reading import RARE_GC_THRESHOLD


def make_sources(root: Path, repos: int, files: int) -> list[str]:
    """`repos` folders of `files` files of five small functions each, with copies across
    repositories (exact duplicates for the global de-duplication to find)."""
    specs = []
    for r in range(repos):
        folder = root / f"repo{r}"
        folder.mkdir(parents=True)
        for f in range(files):
            text = "".join(
                f'def f{r}_{f}_{k}(a, b):\n    """Combine a and b, {k}."""\n'
                f"    c = a + b * {k} + {r}\n    return c - {f}\n\n"
                for k in range(5)
            )
            (folder / f"m{f}.py").write_text(text)
        (folder / "copied.py").write_text(
            'def shared(x):\n    """The same in every repository."""\n    y = x * 2\n    return y\n'
        )
        specs.append(str(folder))
    return specs


def settings(tmp_path: Path, **kwargs: object) -> MineSettings:
    return MineSettings(progress=False, cache_dir=tmp_path / "cache", **kwargs)


def corpus_rows(out: Path) -> dict[str, list[dict]]:
    return {
        split: [row for path in shard_paths(out, split) for row in pq.read_table(path).to_pylist()]
        for split in SPLITS
    }


def comparable(manifest: dict) -> dict:
    """What two runs on the same sources must agree on (not times, nor which run resumed)."""
    return {
        "sources": [{k: v for k, v in s.items() if k != "resumed"} for s in manifest["sources"]],
        "counts": manifest["counts"],
        "dedup": manifest["dedup"],
        "splits": manifest["splits"],
        "shards": manifest["shards"],
    }


def processes(marker: str, parent: int | None = None) -> list[int]:
    """The ids of this machine's processes whose command line holds `marker` (children of
    `parent` only, if given)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() not in (entry / "cmdline").read_bytes():
                    continue
                if parent is not None and int((entry / "stat").read_text().split()[3]) != parent:
                    continue
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
            found.append(int(entry.name))
    return found


class Killer(threading.Thread):
    """Kills (SIGKILL) the first process whose command line holds `marker`, once
    `ready()` says so."""

    def __init__(self, marker: str, ready=lambda: True, parent: int | None = None) -> None:
        super().__init__(daemon=True)
        self.marker, self.ready, self.parent = marker, ready, parent
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and not self.killed:
            victims = processes(self.marker, self.parent) if self.ready() else []
            for pid in victims[:1]:
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def stop(self) -> None:
        self.done.set()
        self.join()


def within(seconds: float, function, *args):
    """What `function(*args)` returns or raises, or a failed test if it has not ended
    within `seconds` (a run that hangs must fail, not hang the test run)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(function(*args))
        except BaseException as exc:  # noqa: BLE001 (handed back to the test)
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s: a hang")
    return outcome[0]


needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


# --- the local engine ---------------------------------------------------------------------------


@needs_proc
def test_a_local_worker_killed_stops_the_run_and_a_rerun_resumes_it(tmp_path, capsys):
    specs = make_sources(tmp_path / "src", repos=3, files=300)
    reference = mine(specs, tmp_path / "reference", settings(tmp_path, workers=1))
    out = tmp_path / "out"
    staged = lambda: any((out / ".work" / "staged").glob("*.json"))  # noqa: E731
    killer = Killer("spawn_main", ready=staged, parent=os.getpid())
    killer.start()
    try:
        stopped = within(
            120, main, ["mine", *specs, "--out", str(out), "--workers", "2", "--quiet"]
        )
    finally:
        killer.stop()
    assert killer.killed and isinstance(stopped, SystemExit)
    message = str(stopped)
    assert "worker process died" in message and "rerun the same command" in message
    assert str(out / ".work") in message

    assert main(["mine", *specs, "--out", str(out), "--workers", "2", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(source["resumed"] for source in manifest["sources"])
    assert comparable(manifest) == comparable(reference)
    assert corpus_rows(out) == corpus_rows(tmp_path / "reference")


def test_the_local_engine_resolves_sources_as_workers_need_them(tmp_path):
    """Tasks are handed to the workers a few at a time: the next sources are resolved
    (cloned, extracted) while the workers mine, not all of them at the start."""
    handed = []
    settings_ = settings(tmp_path, workers=2)

    def tasks():
        for i in range(500):
            handed.append(i)
            yield _Task(source=0, tasks_in_source=500), settings_

    results = _in_worker_processes(tasks(), workers=2)
    next(results)
    time.sleep(1.0)
    # The room of the one result read back, and one task drawn that waits for room.
    assert len(handed) <= TASKS_AHEAD_PER_WORKER * 2 + 2
    assert sum(1 for _ in results) == 499  # and the rest follow


# --- a full disk ---------------------------------------------------------------------------------


def no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_shards_keeps_the_previous_corpus(tmp_path, monkeypatch):
    specs = make_sources(tmp_path / "src", repos=2, files=4)
    out = tmp_path / "out"
    assert main(["mine", *specs, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    before = corpus_rows(out), (out / "manifest.json").read_text()
    more = tmp_path / "more" / "extra.py"
    more.parent.mkdir()
    more.write_text('def extra(x):\n    """A new method."""\n    y = x + 3\n    return y\n')
    more = [str(more.parent)]

    write_table = shards.pq.ParquetWriter.write_table

    def no_space_for_shards(writer, *args: object, **kwargs: object) -> None:
        if "shards.tmp" in str(writer.where):  # staging still writes
            no_space()
        write_table(writer, *args, **kwargs)

    monkeypatch.setattr(shards.pq.ParquetWriter, "write_table", no_space_for_shards)
    with pytest.raises(SystemExit) as stopped:
        main(["mine", *specs, *more, "--out", str(out), "--workers", "1", "--quiet"])
    assert "No space left on device" in str(stopped.value)
    assert "rerun the same command to resume" in str(stopped.value)
    assert (corpus_rows(out), (out / "manifest.json").read_text()) == before
    assert not list((out / ".work").glob("shards.tmp*"))

    monkeypatch.undo()  # room made: the rerun finishes from the staged sources
    assert main(["mine", *specs, *more, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(source["resumed"] for source in manifest["sources"])
    assert manifest["dedup"]["methods_after"] > json.loads(before[1])["dedup"]["methods_after"]


def test_a_full_disk_while_staging_leaves_no_partial_file(tmp_path, monkeypatch):
    specs = make_sources(tmp_path / "src", repos=2, files=2)
    out = tmp_path / "out"
    monkeypatch.setattr("codemt.mine.staging.pq.write_table", no_space)
    with pytest.raises(SystemExit, match="No space left on device"):
        main(["mine", *specs, "--out", str(out), "--workers", "1", "--quiet"])
    assert sorted(p.name for p in (out / ".work" / "staged").iterdir()) == []
    monkeypatch.undo()
    assert main(["mine", *specs, "--out", str(out), "--workers", "1", "--quiet"]) == 0


# --- the Ray engine -----------------------------------------------------------------------------


def test_the_ray_engine_not_installed_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    specs = make_sources(tmp_path / "src", repos=1, files=1)
    with pytest.raises(SystemExit, match=r"pip install 'codemt\[ray\]'"):
        main(["mine", *specs, "--out", str(tmp_path / "out"), "--engine", "ray", "--quiet"])


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of local, ray"):
        MineSettings(engine="spark")


@pytest.fixture
def ray_installed():
    pytest.importorskip("ray", reason="the Ray engine's tests need pip install 'codemt[ray]'")


def test_the_ray_engine_mines_the_corpus_the_local_engine_mines(
    tmp_path, ray_installed, monkeypatch
):
    """A local Ray cluster of two workers; sources that copy one another, a source that
    fails, an excluded source: the same corpus and manifest as the local engine's."""
    specs = make_sources(tmp_path / "src", repos=4, files=6)
    specs.append(str(tmp_path / "no-such-folder"))  # counted as a failed source
    excluded = tmp_path / "benchmark" / "held_out.py"
    excluded.parent.mkdir()
    excluded.write_text(
        "def first(x):\n    y = x + 1\n    return y * y\n\n\n"
        "def second(x):\n    y = x - 1\n    return y / 3\n"
    )
    shutil.copy(excluded, Path(specs[0]) / "copy_of_held_out.py")
    # Shards of 7 rows: several a split, some with rows of two sources.
    options = {"workers": 2, "exclude": (str(excluded.parent),), "shard_rows": 7}
    local = mine(specs, tmp_path / "local", settings(tmp_path, **options))
    ran: dict[str, int] = {}
    ray_runner = cluster.runner

    def counted(ray, doing):
        run = ray_runner(ray, doing)

        def run_counted(fn, parts):
            ran[doing] = len(parts)
            if doing == "writing the shards":  # where a worker elsewhere finds them
                assert all(shard.path.is_absolute() for shard in parts)
            return run(fn, parts)

        return run_counted

    monkeypatch.setattr(pipeline, "runner", counted)
    monkeypatch.chdir(tmp_path)  # --out relative: the workers write where it means here
    on_ray = mine(specs, Path("ray"), settings(tmp_path, engine="ray", **options))

    # The greedy de-duplication ran in parts on the cluster, and every shard was a task.
    assert ran["de-duplicating"] >= 1
    assert ran["writing the shards"] == len(local["shards"]) > 3
    assert comparable(on_ray) == comparable(local)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # Ray's handler gone with it
    assert corpus_rows(tmp_path / "ray") == corpus_rows(tmp_path / "local")
    assert local["dedup"]["exact_duplicates"] == 3 and local["dedup"]["excluded"] == 2
    assert [s["failures"] != [] for s in on_ray["sources"]] == [False] * 4 + [True]


def test_a_shard_failing_on_a_ray_worker_stops_the_run_and_keeps_the_previous_corpus(
    tmp_path, ray_installed, monkeypatch
):
    specs = make_sources(tmp_path / "src", repos=2, files=3)
    out = tmp_path / "out"
    options = settings(tmp_path, engine="ray", workers=2, shard_rows=5)
    mine(specs[:1], out, options)
    before = corpus_rows(out), (out / "manifest.json").read_text()
    ray_runner = cluster.runner

    def failing_shards(ray, doing):
        run = ray_runner(ray, doing)
        if doing != "writing the shards":
            return run
        # A task that raises on the worker, as a full disk would (`json.dumps` of a Shard:
        # TypeError; any function the workers can import does).
        return lambda fn, parts: run(json.dumps, parts)

    monkeypatch.setattr(pipeline, "runner", failing_shards)
    with pytest.raises(staging.MiningStopped) as stopped:
        mine(specs, out, options)
    message = str(stopped.value)
    assert "writing the shards on the Ray cluster failed: TypeError" in message
    assert "rerun the same command to finish" in message and "Traceback" not in message
    assert (corpus_rows(out), (out / "manifest.json").read_text()) == before
    assert not list((out / ".work").glob("shards.tmp*"))


@needs_proc
def test_ray_workers_killed_mid_source_and_mid_shard_run_their_tasks_again(
    tmp_path, ray_installed, capsys
):
    specs = make_sources(tmp_path / "src", repos=3, files=300)
    shard_rows = ["--shard-rows", "200"]  # some 20 shards, each a task
    reference_out = tmp_path / "reference"
    command = ["mine", *specs, "--workers", "1", "--quiet", *shard_rows]
    assert main([*command, "--out", str(reference_out)]) == 0
    killers = [Killer("ray::stage_source"), Killer("ray::write_shard")]
    for killer in killers:
        killer.start()
    try:
        code = within(
            120,
            main,
            ["mine", *specs, "--out", str(tmp_path / "ray"), "--engine", "ray", *shard_rows],
        )
    finally:
        for killer in killers:
            killer.stop()
    assert code == 0 and all(killer.killed for killer in killers)
    reference = json.loads((reference_out / "manifest.json").read_text())
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert comparable(manifest) == comparable(reference)
    assert corpus_rows(tmp_path / "ray") == corpus_rows(reference_out)
    # Nothing of the killed task's half-written shard is left among the shards.
    assert sorted(os.listdir(tmp_path / "ray" / "shards")) == manifest["shards"]


def test_a_source_staged_whole_in_one_process_equals_its_staging_in_tasks(tmp_path):
    """What a cluster's worker runs (`stage_source`) stages what the local engine's tasks
    stage, byte for byte in content, with the same tally."""
    specs = make_sources(tmp_path / "src", repos=1, files=40)  # several tasks of 16 files
    specs.append(str(tmp_path / "missing"))
    local = Stage(tmp_path / "local", settings(tmp_path))
    stage_sources(specs, local, settings(tmp_path, workers=1))
    whole = Stage(tmp_path / "whole", settings(tmp_path))
    warnings = [stage_source(i, spec, whole, settings(tmp_path)) for i, spec in enumerate(specs)]

    assert warnings[0] == [] and "missing" in warnings[1][0]
    for spec in specs:
        assert whole.status(spec) == local.status(spec)
        assert pq.read_table(whole.records_path(spec)) == pq.read_table(local.records_path(spec))


def test_a_source_failing_on_a_ray_worker_stops_the_run_naming_it(tmp_path, ray_installed):
    """What a worker cannot do (here: write the staged file, whose place is taken by a
    folder) ends the run with the source named and the rest kept for a rerun."""
    specs = make_sources(tmp_path / "src", repos=2, files=2)
    out = tmp_path / "out"
    stage = Stage(out, settings(tmp_path))
    stage.records_path(specs[1]).mkdir(parents=True)
    command = ["mine", *specs, "--out", str(out), "--engine", "ray", "--quiet", "--workers", "2"]
    stopped = within(120, main, [*command, "--cache-dir", str(tmp_path / "cache")])
    assert isinstance(stopped, SystemExit)
    message = str(stopped)
    assert f"mining {specs[1]} failed on a Ray worker" in message
    assert "rerun the same command to resume" in message
    assert not stage.is_done(specs[1])
    stage.records_path(specs[1]).rmdir()  # the obstacle gone, the rerun finishes
    assert within(120, main, [*command, "--cache-dir", str(tmp_path / "cache")]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["source"] for s in manifest["sources"]] == specs


def test_mining_collects_garbage_rarely_and_gives_the_setting_back(tmp_path, monkeypatch):
    """The garbage collector's threshold is raised while sources are mined, in this
    process and in the local engine's workers and a cluster's, and restored after, also
    when mining fails."""
    import gc

    before = gc.get_threshold()
    seen = []
    run_task = staging._run_task
    monkeypatch.setattr(
        staging, "_run_task", lambda item: seen.append(gc.get_threshold()) or run_task(item)
    )
    specs = make_sources(tmp_path / "src", 1, 2)
    mine(specs, tmp_path / "out", settings(tmp_path, workers=1))
    assert seen and all(t[0] == RARE_GC_THRESHOLD for t in seen)
    assert gc.get_threshold() == before
    seen.clear()
    stage_source(0, specs[0], Stage(tmp_path / "one", settings(tmp_path)), settings(tmp_path))
    assert seen[0][0] == RARE_GC_THRESHOLD and gc.get_threshold() == before
    with pytest.raises(ValueError, match="no sources"):
        mine([], tmp_path / "none", settings(tmp_path))
    assert gc.get_threshold() == before
    with worker_pool(1) as pool:
        assert pool.submit(gc.get_threshold).result(timeout=60)[0] == RARE_GC_THRESHOLD
