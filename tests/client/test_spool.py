"""The spool on real files: order, partial batches, adopting orphans across processes, torn lines, limits."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pheromone.spool import Spool, SpoolError, SpoolFullError


def drain(spool: Spool, batch: int = 1000) -> list[bytes]:
    """Read and commit everything pending."""
    out: list[bytes] = []
    while spool.pending():
        records, cursor = spool.read_batch(batch)
        out += records
        spool.commit(cursor)
    return out


def spool_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_records_come_back_in_order_and_partial_batches_leave_the_rest(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([b"a", b"b", b"c"])
        spool.append([b"d"])
        assert spool.backlog_bytes() == 8

        first, cursor = spool.read_batch(2)
        assert first == [b"a", b"b"]
        assert spool.read_batch(2)[0] == first  # reading does not consume
        spool.commit(cursor)
        spool.commit(cursor)  # a cursor committed twice changes nothing

        assert spool.read_batch(10)[0] == [b"c", b"d"]
        assert drain(spool) == [b"c", b"d"]
        assert not spool.pending() and spool.backlog_bytes() == 0
        assert spool_files(tmp_path) == []  # a consumed own file is deleted

        spool.append([b"e"])  # and a fresh one is made on demand
        assert drain(spool) == [b"e"]


def test_close_leaves_the_unconsumed_rest_for_the_next_opener(tmp_path: Path) -> None:
    with Spool(tmp_path) as first:
        first.append([b"1", b"2", b"3", b"4", b"5"])
        first.commit(first.read_batch(2)[1])
    assert any(name.endswith(".offset") for name in spool_files(tmp_path))

    with Spool(tmp_path) as second:
        assert second.backlog_bytes() == 6
        second.append([b"own"])  # its own records come after the adopted ones
        assert drain(second, batch=2) == [b"3", b"4", b"5", b"own"]
    assert spool_files(tmp_path) == []


def test_orphans_replay_oldest_first_before_own_records(tmp_path: Path) -> None:
    (tmp_path / "spool-00000000000000000002-1-bb.jsonl").write_bytes(b"new\n")
    (tmp_path / "spool-00000000000000000001-1-aa.jsonl").write_bytes(b"old\n")
    with Spool(tmp_path) as spool:
        spool.append([b"own"])
        assert drain(spool, batch=1) == [b"old", b"new", b"own"]


def test_a_torn_last_line_in_an_orphan_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "spool-00000000000000000001-1-aa.jsonl").write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    with caplog.at_level(logging.WARNING, logger="pheromone.spool"):
        with Spool(tmp_path) as spool:
            assert spool.backlog_bytes() == 16
        assert [r.getMessage() for r in caplog.records] == [
            "spool spool-00000000000000000001-1-aa.jsonl: dropped a torn last record of 5 bytes (writer died)"
        ]
        with Spool(tmp_path) as spool:  # the tail was cut off, so the next adopter has nothing to report
            assert drain(spool) == [b'{"a":1}', b'{"b":2}']
        assert len(caplog.records) == 1
    assert spool_files(tmp_path) == []


def test_a_live_owner_keeps_its_file_until_it_is_killed(tmp_path: Path) -> None:
    holder = (
        "import sys; from pathlib import Path; from pheromone.spool import Spool\n"
        "spool = Spool(Path(sys.argv[1])); spool.open(); spool.append([b'x', b'y'])\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        with Spool(tmp_path) as spool:
            assert not spool.pending()  # flock is held by the other process: not an orphan
        proc.kill()  # SIGKILL: no close(), no cleanup
        proc.wait()

    with Spool(tmp_path) as spool:
        assert drain(spool) == [b"x", b"y"]
    assert spool_files(tmp_path) == []


def test_two_spools_in_one_process_do_not_adopt_each_other(tmp_path: Path) -> None:
    with Spool(tmp_path) as first:
        first.append([b"mine"])
        with Spool(tmp_path) as second:
            assert not second.pending()
        assert drain(first) == [b"mine"]


def test_over_max_bytes_raises_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "spool-00000000000000000001-1-aa.jsonl").write_bytes(b"orphan\n")  # 7 bytes count too
    with Spool(tmp_path, max_bytes=20) as spool:
        spool.append([b"x" * 9])  # 10 bytes: 17 in all
        with pytest.raises(SpoolFullError):
            spool.append([b"y", b"z"])  # 4 more would make 21
        assert spool.backlog_bytes() == 17
        assert drain(spool) == [b"orphan", b"x" * 9]


def test_a_record_with_a_newline_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        with pytest.raises(ValueError, match="newline"):
            spool.append([b"fine", b"two\nlines"])
        assert not spool.pending()


def test_a_closed_spool_refuses_work(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolError, match="not open"):
        spool.append([b"x"])
    with spool, pytest.raises(ValueError):
        spool.read_batch(0)


records = st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), max_size=5)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("append"), records),
        st.tuples(st.just("read"), st.integers(1, 6), st.booleans()),  # max_records, commit?
        st.tuples(st.just("reopen")),
    ),
    max_size=20,
)


@settings(deadline=None, max_examples=150)
@given(before=steps, after=steps)
def test_every_record_is_consumed_once_in_order(
    before: list[tuple[object, ...]], after: list[tuple[object, ...]]
) -> None:
    appended: list[bytes] = []
    consumed: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp))
        spool.open()
        for step in [*before, ("reopen",), *after]:
            match step:
                case ("append", list() as batch):
                    spool.append(batch)
                    appended += batch
                case ("read", int() as n, bool() as commit):
                    batch, cursor = spool.read_batch(n)
                    assert batch == appended[len(consumed) : len(consumed) + n]
                    if commit:
                        spool.commit(cursor)
                        consumed += batch
                case ("reopen",):
                    spool.close()
                    spool = Spool(Path(tmp))
                    spool.open()
            assert spool.pending() == (len(consumed) < len(appended))
        consumed += drain(spool, batch=3)
        spool.close()
        assert consumed == appended
        assert list(Path(tmp).iterdir()) == []
