"""train/dist.py reads the launcher's rendezvous variables without writing them; only the DeepSpeed start adds the
missing ones (DeepSpeed's init_distributed reads os.environ alone), and never changes a launcher's."""

from __future__ import annotations

import os

import pytest

from clipzoo.core.train import dist


@pytest.fixture()
def bare_env(monkeypatch):
    for name in dist.RENDEZVOUS_VARS:
        monkeypatch.delenv(name, raising=False)  # monkeypatch puts back whatever the test run had


def test_a_plain_process_is_rank_0_of_1_and_init_writes_nothing(bare_env):
    info = dist.init(device="cpu")
    assert (info.rank, info.world_size, info.local_rank, info.device) == (0, 1, 0, "cpu")
    assert not any(name in os.environ for name in dist.RENDEZVOUS_VARS)


def test_rendezvous_env_sets_only_what_is_missing(bare_env, monkeypatch):
    monkeypatch.setenv("MASTER_PORT", "29511")
    monkeypatch.setenv("WORLD_SIZE", "1")
    info = dist.init(device="cpu")
    assert dist.ensure_rendezvous_env(info) == {"RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    assert os.environ["MASTER_PORT"] == "29511" and os.environ["WORLD_SIZE"] == "1"
    assert dist.ensure_rendezvous_env(info) == {}  # a second start changes nothing
    monkeypatch.delenv("MASTER_PORT")
    port = int(dist.ensure_rendezvous_env(info)["MASTER_PORT"])
    import socket

    with socket.socket() as probe:  # a port nothing listens on: the rendezvous can bind it
        probe.bind(("127.0.0.1", port))
