"""The CPU allocator setting: taken on glibc, skipped on request."""

import platform

import pytest

from tests.conftest import python

CHECK = "from distill.host import keep_freed_memory; print(keep_freed_memory())"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_keeps_freed_memory_unless_told_not_to():
    assert python("-c", CHECK).stdout.strip() == "True"
    assert python("-c", CHECK, env={"DISTILL_MALLOC": "default"}).stdout.strip() == "False"
