"""Fixtures for Queen's published Python client test files (queen-mq, unchanged) when they run
against a queen-rs server: `client` is a `Queen` client for the server at QUEEN_URL. Each run
starts on a fresh database, so no clean-up is needed."""

import os

import pytest

from queen import Queen


@pytest.fixture
async def client():
    queen = Queen(os.environ["QUEEN_URL"])
    yield queen
    await queen.close()
