"""The output lock: a live holder refuses a second run; a dead one's lock, or one whose lease
ran out, is taken over once, however many runs race for it."""
import json
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from pixcap.cli.main import main
from pixcap.output.lock import LEASE_SECONDS, LOCK_NAME, LockLost, OutputInUse, OutputLock
from pixcap.output.storage import Storage

from tests.pipeline.test_faults import fake_graph  # noqa: F401 (a fixture: `pixcap run` with the Ray graph replaced)
from tests.tiny_jobs import with_tiny_models_yaml

HOLD = """
import sys, time
from pixcap.output.lock import OutputLock
OutputLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/out."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "locked\n"
    yield process
    process.kill()
    process.wait()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped), with its start time."""
    process = psutil.Popen([sys.executable, "-c", "pass"])
    started = process.create_time()
    process.wait()
    return process.pid, started


def write_lock(out, **owner):
    out.mkdir(exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps(owner))


def test_acquire_and_release(tmp_path):
    lock = OutputLock(Storage(str(tmp_path)))
    before = time.time()
    assert lock.acquire() is None
    owner = json.loads((tmp_path / LOCK_NAME).read_text())
    assert {k: owner[k] for k in ("host", "pid", "started")} == {
        "host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}
    assert owner["lease_seconds"] == LEASE_SECONDS and before + LEASE_SECONDS <= owner["expires"] <= time.time() + LEASE_SECONDS
    assert os.listdir(tmp_path) == [LOCK_NAME]  # no temp file or claim left beside it
    lock.release()
    assert os.listdir(tmp_path) == []


def test_a_live_holder_refuses_with_one_line_naming_it(tmp_path, holder):
    with pytest.raises(OutputInUse) as refused:
        OutputLock(str(tmp_path / "out")).acquire()
    message = str(refused.value)
    assert f"in use by another pixcap run: pid {holder.pid} on {socket.gethostname()} since " in message
    assert str(tmp_path / "out" / LOCK_NAME) in message and "\n" not in message
    assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == holder.pid  # untouched


def test_the_same_process_cannot_take_its_own_lock_twice(tmp_path):
    lock = OutputLock(str(tmp_path))
    lock.acquire()
    with pytest.raises(OutputInUse):
        OutputLock(str(tmp_path)).acquire()
    lock.release()


def test_a_dead_holder_is_stale_and_taken_over(tmp_path):
    pid, started = dead_pid()
    write_lock(tmp_path, host=socket.gethostname(), pid=pid, started=started)
    lock = OutputLock(str(tmp_path))
    assert lock.acquire() == {"host": socket.gethostname(), "pid": pid, "started": started}
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_reused_pid_is_stale(tmp_path):
    """The pid is alive but started at another time: another process got the dead run's pid."""
    me = psutil.Process()
    write_lock(tmp_path, host=socket.gethostname(), pid=me.pid, started=me.create_time() - 100)
    assert OutputLock(str(tmp_path)).acquire()["pid"] == me.pid


def test_a_killed_but_unreaped_holder_is_stale(tmp_path):
    process = psutil.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    write_lock(tmp_path, host=socket.gethostname(), pid=process.pid, started=process.create_time())
    process.kill()
    try:
        for _ in range(500):
            if process.status() == psutil.STATUS_ZOMBIE:  # dead, not yet waited for by its parent
                break
            time.sleep(0.01)
        assert OutputLock(str(tmp_path)).acquire()["pid"] == process.pid
    finally:
        process.wait()


def test_an_unreadable_lock_is_stale(tmp_path):
    (tmp_path / LOCK_NAME).write_text("{not json")
    assert OutputLock(str(tmp_path)).acquire() == {}


def test_a_lock_from_another_host_is_never_taken(tmp_path):
    pid, started = dead_pid()
    write_lock(tmp_path, host="some-other-host", pid=pid, started=started)
    with pytest.raises(OutputInUse, match=f"pid {pid} on some-other-host"):
        OutputLock(str(tmp_path)).acquire()


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    lock = OutputLock(str(tmp_path))
    lock.acquire()
    write_lock(tmp_path, host="some-other-host", pid=1, started=0)  # someone replaced it
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == "some-other-host"


RACE = """
import os, sys, time
from pixcap.output import lock
from pixcap.output.lock import OutputInUse, OutputLock
check = lock.owner_alive
lock.owner_alive = lambda owner: time.sleep(0.2) or check(owner)  # a slow check: all see the stale lock
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
try:
    OutputLock(sys.argv[1]).acquire()
    print("won", flush=True)
    while not os.path.exists(sys.argv[3]):  # hold it until every racer has tried
        time.sleep(0.01)
except OutputInUse:
    print("refused", flush=True)
"""


def test_runs_racing_for_a_stale_lock_take_it_over_once(tmp_path):
    out = tmp_path / "out"
    pid, started = dead_pid()
    write_lock(out, host=socket.gethostname(), pid=pid, started=started)
    go, done = tmp_path / "go", tmp_path / "done"
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(out), str(go), str(done)], stdout=subprocess.PIPE, text=True)
              for _ in range(4)]
    go.touch()
    results = [racer.stdout.readline().strip() for racer in racers]  # a winner prints, then holds the lock
    done.touch()
    for racer in racers:
        racer.communicate(timeout=60)
    assert sorted(results) == ["refused", "refused", "refused", "won"]


def test_cli_refuses_an_output_in_use_with_exit_code_2(tmp_path, holder, capsys, models_cache):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    job = tmp_path / "job.yaml"
    job.write_text(with_tiny_models_yaml(f"inputs: ['{tmp_path}/images']\noutput: {tmp_path}/out\nmodels_cache: {models_cache}\n"))
    code = main(["run", str(job)])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith(f"pixcap: error: output {tmp_path}/out is in use by another pixcap run: pid {holder.pid} on ")
    assert len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path / "out")) == [LOCK_NAME]  # nothing touched


def test_cli_takes_over_a_stale_lock_and_says_so(fake_graph, capsys):  # noqa: F811
    pid, started = dead_pid()
    write_lock(fake_graph.out, host=socket.gethostname(), pid=pid, started=started)
    code = main(["run", fake_graph.job_file])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"pixcap: took over the stale lock of a run that is gone (pid {pid} on {socket.gethostname()} since " in err
    assert f"inputs {2 * fake_graph.batches} = written {2 * fake_graph.batches} + rejected 0 in {fake_graph.batches} shards" in out
    assert not (fake_graph.out / LOCK_NAME).exists()


# -- the lease --------------------------------------------------------------------------------
def test_the_holder_renews_its_lease(tmp_path):
    lock = OutputLock(str(tmp_path), lease_seconds=0.6)
    lock.acquire()
    first = json.loads((tmp_path / LOCK_NAME).read_text())
    time.sleep(1.0)  # several renewals, every 0.2 s
    renewed = json.loads((tmp_path / LOCK_NAME).read_text())
    assert renewed["token"] == first["token"] and renewed["expires"] > first["expires"] + 0.3
    lock.check()  # still ours
    lock.release()
    assert os.listdir(tmp_path) == []


def test_another_hosts_expired_lease_is_taken_over(tmp_path):
    write_lock(tmp_path, host="some-other-host", pid=1, started=0, token="t", lease_seconds=60, expires=time.time() - 1)
    lock = OutputLock(str(tmp_path))
    assert lock.acquire()["host"] == "some-other-host"
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert os.listdir(tmp_path) == [LOCK_NAME]  # the takeover claim is gone too
    lock.release()


def test_another_hosts_running_lease_is_refused_naming_when_it_ends(tmp_path):
    write_lock(tmp_path, host="some-other-host", pid=7, started=0, token="t", lease_seconds=60, expires=time.time() + 30)
    with pytest.raises(OutputInUse, match=r"pid 7 on some-other-host .*its lease runs to .*taken over then"):
        OutputLock(str(tmp_path)).acquire()


def test_a_live_process_on_this_host_keeps_its_lock_even_past_its_lease(tmp_path):
    """A holder that could not renew (suspended, say) but lives is never taken over on its host."""
    me = psutil.Process()
    write_lock(tmp_path, host=socket.gethostname(), pid=me.pid, started=me.create_time(), token="t", expires=time.time() - 100)
    with pytest.raises(OutputInUse):
        OutputLock(str(tmp_path)).acquire()


def test_a_holder_whose_lock_was_taken_stops_renewing_and_check_raises(tmp_path):
    lock = OutputLock(str(tmp_path), lease_seconds=0.6)
    lock.acquire()
    write_lock(tmp_path, host="some-other-host", pid=1, started=0, token="theirs", expires=time.time() + 60)
    deadline = time.monotonic() + 5
    while not lock.lost.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(LockLost, match="lease ran out"):
        lock.check()
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == "theirs"  # not removed, not overwritten


HOST_RACE = """
import os, socket, sys, time
from pixcap.output import lock
from pixcap.output.lock import OutputInUse, OutputLock
socket.gethostname = lambda: sys.argv[4]  # each racer is a host of its own: no flock between them
lock.CONFIRM_SECONDS = 0.2
read = OutputLock._read
def slow_read(self):  # a slow store: every racer sees the expired lock before any takes it
    time.sleep(0.1)
    return read(self)
OutputLock._read = slow_read
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
try:
    OutputLock(sys.argv[1], lease_seconds=5).acquire()
    print("won", flush=True)
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.01)
except OutputInUse:
    print("refused", flush=True)
"""


def test_hosts_racing_for_an_expired_lease_take_it_over_once(tmp_path):
    out = tmp_path / "out"
    write_lock(out, host="gone-host", pid=1, started=0, token="t", lease_seconds=60, expires=time.time() - 1)
    go, done = tmp_path / "go", tmp_path / "done"
    racers = [subprocess.Popen([sys.executable, "-c", HOST_RACE, str(out), str(go), str(done), f"host-{i}"],
                               stdout=subprocess.PIPE, text=True) for i in range(4)]
    go.touch()
    results = [racer.stdout.readline().strip() for racer in racers]
    winner = json.loads((out / LOCK_NAME).read_text())["host"]
    done.touch()
    for racer in racers:
        racer.communicate(timeout=60)
    assert sorted(results) == ["refused", "refused", "refused", "won"]
    assert winner == f"host-{results.index('won')}"


FULL_DISK = """
import errno, resource, signal, sys
from pixcap.output.lock import OutputLock
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no byte can be written: a full disk
try:
    OutputLock(sys.argv[1]).acquire()
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def test_a_full_disk_leaves_no_temp_file_behind(tmp_path):
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "EFBIG", result.stderr
    assert os.listdir(tmp_path) == []


# -- the same lock on an object store (moto's S3 server on 127.0.0.1) ---------------------------
@pytest.fixture
def s3_out(bucket):
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    return fs, f"{bucket}/out"


@pytest.mark.slow
def test_on_s3_a_lock_is_taken_renewed_refused_and_released(s3_out):
    fs, out = s3_out
    lock = OutputLock(out, lease_seconds=0.9)
    assert lock.acquire() is None
    with pytest.raises(OutputInUse, match=f"output {out} is in use by another pixcap run: pid {os.getpid()} on "):
        OutputLock(out).acquire()
    first = json.loads(fs.cat_file(f"{out}/{LOCK_NAME}"))
    time.sleep(1.0)
    assert json.loads(fs.cat_file(f"{out}/{LOCK_NAME}"))["expires"] > first["expires"]
    lock.release()
    fs.invalidate_cache()
    assert not fs.exists(f"{out}/{LOCK_NAME}") and fs.glob(f"{out}/*") == []


@pytest.mark.slow
def test_on_s3_hosts_racing_for_an_expired_lease_take_it_over_once(tmp_path, s3_out):
    fs, out = s3_out
    fs.pipe_file(f"{out}/{LOCK_NAME}", json.dumps({"host": "gone-host", "pid": 1, "started": 0, "token": "t",
                                                    "expires": time.time() - 1}).encode())
    go, done = tmp_path / "go", tmp_path / "done"
    racers = [subprocess.Popen([sys.executable, "-c", HOST_RACE, out, str(go), str(done), f"host-{i}"],
                               stdout=subprocess.PIPE, text=True) for i in range(4)]
    go.touch()
    results = [racer.stdout.readline().strip() for racer in racers]
    winner = json.loads(fs.cat_file(f"{out}/{LOCK_NAME}"))["host"]
    done.touch()
    for racer in racers:
        racer.communicate(timeout=60)
    assert sorted(results) == ["refused", "refused", "refused", "won"]
    assert winner == f"host-{results.index('won')}"


def test_a_claim_left_by_a_taker_that_died_is_cleared(tmp_path):
    """A taker killed between its claim and its new lock leaves the claim; the next run clears it."""
    pid, started = dead_pid()
    (tmp_path / f"{LOCK_NAME}.takeover-0123456789abcdef").write_text(
        json.dumps({"host": socket.gethostname(), "pid": pid, "started": started, "token": "t", "expires": time.time() + 60}))
    lock = OutputLock(str(tmp_path))
    assert lock.acquire() is None
    assert os.listdir(tmp_path) == [LOCK_NAME]
    lock.release()
