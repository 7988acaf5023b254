"""The storage contract, on every backend: local folders, memory:// and a real S3 server.

``write_if_absent`` is what makes the Delta log safe, so it gets the most attention: one
winner, losers see ``FileExistsError``, the winner's bytes are never replaced or torn.
"""

from __future__ import annotations

import os
import threading
import traceback
import uuid

import pyarrow as pa
import pytest

import lakehouse
from tests.processes import race
from lakehouse.storage.local import LocalStorage
from lakehouse.storage.memory import MemoryStorage

BACKENDS = ["local", "memory", pytest.param("s3", marks=pytest.mark.s3)]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """``(storage, base)``: a storage and an empty, unique folder path inside it."""
    if request.param == "local":
        return LocalStorage(), str(tmp_path / "store")
    if request.param == "memory":
        return MemoryStorage(), f"/storage-tests/{uuid.uuid4().hex}"
    from lakehouse.storage.s3 import S3Storage

    s3 = request.getfixturevalue("s3")
    return S3Storage(s3.storage_options), f"{s3.bucket}/storage-tests/{uuid.uuid4().hex}"


# --- the contract, on every backend ------------------------------------------------------


def test_write_if_absent_creates_the_file(backend):
    storage, base = backend
    path = storage.join(base, "_delta_log", "00000000000000000000.json")
    storage.write_if_absent(path, b'{"commitInfo":{}}\n')
    assert storage.read(path) == b'{"commitInfo":{}}\n'
    info = storage.head(path)
    assert info is not None and info.size == len(b'{"commitInfo":{}}\n') and info.name == "00000000000000000000.json"
    assert storage.exists(path)


def test_second_write_if_absent_raises_and_keeps_the_first_bytes(backend):
    storage, base = backend
    path = storage.join(base, "commit.json")
    storage.write_if_absent(path, b"first writer")
    with pytest.raises(FileExistsError):
        storage.write_if_absent(path, b"second writer, longer bytes")
    assert storage.read(path) == b"first writer"
    assert storage.head(path).size == len(b"first writer")


def test_list_dir_is_sorted_and_holds_only_direct_files(backend):
    storage, base = backend
    for name in ["b.json", "a.json", "c10.json", "c2.json"]:
        storage.write(storage.join(base, name), name.encode())
    storage.write(storage.join(base, "sub", "inner.json"), b"x")
    names = [info.name for info in storage.list_dir(base)]
    assert names == ["a.json", "b.json", "c10.json", "c2.json"]
    sizes = {info.name: info.size for info in storage.list_dir(base)}
    assert sizes["c10.json"] == len(b"c10.json")
    assert [i.name for i in storage.list_from(base, "b.json")] == ["b.json", "c10.json", "c2.json"]
    assert sorted(i.name for i in storage.walk(base)) == ["a.json", "b.json", "c10.json", "c2.json", "inner.json"]


def test_list_dir_of_a_missing_folder_is_empty(backend):
    storage, base = backend
    assert storage.list_dir(storage.join(base, "nothing", "here")) == []
    assert list(storage.walk(storage.join(base, "nothing"))) == []


def test_head_read_delete(backend):
    storage, base = backend
    path = storage.join(base, "data.parquet")
    assert storage.head(path) is None
    assert not storage.exists(path)
    with pytest.raises(FileNotFoundError):
        storage.read(path)
    storage.write(path, b"12345")
    assert storage.head(path).size == 5
    storage.delete(path)
    assert storage.head(path) is None
    with pytest.raises(FileNotFoundError):
        storage.read(path)
    storage.delete(path)  # deleting a missing file is not an error


def test_write_overwrites(backend):
    storage, base = backend
    path = storage.join(base, "_last_checkpoint")
    storage.write(path, b"a much longer first version")
    storage.write(path, b"short")
    assert storage.read(path) == b"short"
    assert storage.head(path).size == 5


def test_threads_creating_one_file_get_exactly_one_winner(backend):
    """In-process threads: memory's lock, the local link and the (single-threaded) S3 server."""
    storage, base = backend
    threads, rounds = 6, 8
    for round_ in range(rounds):
        path = storage.join(base, f"{round_:020d}.json")
        barrier = threading.Barrier(threads)
        winners: list[int] = []
        losers: list[int] = []

        def attempt(writer: int) -> None:
            barrier.wait(timeout=30)
            try:
                storage.write_if_absent(path, _payload(writer, round_, size=4096))
                winners.append(writer)
            except FileExistsError:
                losers.append(writer)

        workers = [threading.Thread(target=attempt, args=(w,)) for w in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert len(winners) == 1, f"round {round_}: winners {winners}"
        assert len(losers) == threads - 1
        assert _owner(storage.read(path), round_, size=4096) == winners[0]


# --- local specifics -----------------------------------------------------------------------


def test_local_leaves_no_temp_files(tmp_path):
    storage = LocalStorage()
    folder = tmp_path / "log"
    storage.write_if_absent(str(folder / "00000000000000000000.json"), b"v0")
    with pytest.raises(FileExistsError):
        storage.write_if_absent(str(folder / "00000000000000000000.json"), b"other")
    storage.write(str(folder / "_last_checkpoint"), b"1")
    storage.write(str(folder / "_last_checkpoint"), b"2")
    assert sorted(os.listdir(folder)) == ["00000000000000000000.json", "_last_checkpoint"]


def test_local_write_if_absent_refuses_to_replace_an_existing_non_commit_file(tmp_path):
    # os.rename would silently replace; the link-based publish must not.
    target = tmp_path / "f.json"
    target.write_bytes(b"already here")
    with pytest.raises(FileExistsError):
        LocalStorage().write_if_absent(str(target), b"new")
    assert target.read_bytes() == b"already here"
    assert os.listdir(tmp_path) == ["f.json"]


_RACE_PAYLOAD = 64 * 1024  # several pages: a torn write would be visible


def _payload(writer: int, round_: int, *, size: int = _RACE_PAYLOAD) -> bytes:
    header = f"{writer:03d}:{round_:05d}:".encode()
    return header + bytes([65 + writer % 26]) * (size - len(header))


def _owner(data: bytes, round_: int, *, size: int = _RACE_PAYLOAD) -> int:
    """The writer whose complete payload ``data`` is, or -1 for anything torn or foreign."""
    try:
        writer = int(data[:3])
    except ValueError:
        return -1
    return writer if data == _payload(writer, round_, size=size) else -1


def _race_worker(directory: str, writer: int, rounds: int, barrier, results) -> None:
    """One process: each round, try to create the round's file, then read what is there."""
    try:
        storage = LocalStorage()
        out = []
        for round_ in range(rounds):
            path = os.path.join(directory, f"{round_:020d}.json")
            barrier.wait(timeout=120)
            try:
                storage.write_if_absent(path, _payload(writer, round_))
                won = True
            except FileExistsError:
                won = False
            # Whoever reads right after the race must see one writer's complete bytes.
            out.append((round_, won, _owner(storage.read(path), round_)))
        results.put((writer, out, None))
    except BaseException:  # noqa: BLE001 - report to the parent instead of hanging it
        results.put((writer, [], traceback.format_exc()))


@pytest.mark.slow
def test_local_process_race_has_one_winner_per_round_with_complete_bytes(tmp_path):
    processes, rounds = 8, 50
    directory = str(tmp_path / "_delta_log")
    os.makedirs(directory)
    reports = race(_race_worker, lambda w, barrier, results: (directory, w, rounds, barrier, results),
                   processes, timeout=180)
    winners: dict[int, list[int]] = {r: [] for r in range(rounds)}
    for writer, out, _ in reports:
        for round_, won, seen in out:
            if won:
                winners[round_].append(writer)
    for round_ in range(rounds):
        assert len(winners[round_]) == 1, f"round {round_}: winners {winners[round_]}"
    for writer, out, _ in reports:
        for round_, _won, seen in out:
            assert seen == winners[round_][0], f"round {round_}: writer {writer} saw torn or foreign bytes"
    for round_ in range(rounds):
        data = open(os.path.join(directory, f"{round_:020d}.json"), "rb").read()
        assert _owner(data, round_) == winners[round_][0]
    assert sorted(os.listdir(directory)) == [f"{r:020d}.json" for r in range(rounds)]  # no temp files


# --- S3 specifics ----------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_412_is_file_exists(s3):
    """The server answers 412 to a second conditional PUT; every layer reports "exists"."""
    import boto3
    import botocore.exceptions
    import s3fs

    from lakehouse.storage.s3 import S3Storage, _is_precondition_failure

    key = f"storage-tests/{uuid.uuid4().hex}/00000000000000000000.json"
    client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                          aws_access_key_id=s3.storage_options["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=s3.secret)
    client.put_object(Bucket=s3.bucket, Key=key, Body=b"winner", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as raw:
        client.put_object(Bucket=s3.bucket, Key=key, Body=b"loser", IfNoneMatch="*")
    assert raw.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert _is_precondition_failure(raw.value)  # a bare boto 412 counts as "exists" too

    fs = s3fs.S3FileSystem(key=s3.storage_options["AWS_ACCESS_KEY_ID"], secret=s3.secret,
                           endpoint_url=s3.endpoint_url, skip_instance_cache=True)
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{s3.bucket}/{key}", b"loser", mode="create")

    storage = S3Storage(s3.storage_options)
    with pytest.raises(FileExistsError):
        storage.write_if_absent(f"{s3.bucket}/{key}", b"loser")
    assert storage.read(f"{s3.bucket}/{key}") == b"winner"


@pytest.mark.s3
def test_s3_secret_never_in_reprs(s3):
    from lakehouse.storage.s3 import S3Storage

    assert s3.secret not in repr(S3Storage(s3.storage_options))
    url = s3.url()
    created = lakehouse.create_table(url, pa.schema([("id", pa.int64())]), storage_options=s3.storage_options)
    created.append(pa.table({"id": [1, 2, 3]}))
    opened = lakehouse.open_table(url, storage_options=s3.storage_options)
    snapshot = opened.snapshot()
    for shown in (created, opened, opened.location, snapshot, snapshot.location, opened.location.storage):
        assert s3.secret not in repr(shown)
        assert s3.secret not in str(shown)
    assert snapshot.to_arrow().column("id").to_pylist() == [1, 2, 3]


@pytest.mark.s3
def test_s3_errors_do_not_leak_the_secret(s3):
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/t"
    with pytest.raises(lakehouse.StorageError) as write_error:
        lakehouse.create_table(missing, pa.schema([("id", pa.int64())]), storage_options=s3.storage_options)
    with pytest.raises(lakehouse.TableNotFoundError) as open_error:
        lakehouse.open_table(missing, storage_options=s3.storage_options)
    for info in (write_error, open_error):
        text = "".join(traceback.format_exception(info.value))  # the whole chain, causes included
        assert s3.secret not in text
        assert s3.secret not in repr(info.value.args)
    assert "no-such-bucket" in str(write_error.value)  # still says which location failed
