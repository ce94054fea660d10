"""llama.cpp's native server for the tests: ``$VILMS_LLAMA_SERVER``, else a build cached per machine.

The build comes from the llama.cpp that llama-cpp-python vendors, at the installed version
(its sdist, fetched with pip), so the server and the in-process ``llama_cpp.Llama`` the
tests compare against run the same llama.cpp. It takes 6.5-15 min on 2 cores, once per
machine: the binary is kept in ``~/.cache/vilms/llama-server/<version>/bin/``
(``$XDG_CACHE_HOME`` honoured). A file lock makes concurrent test processes wait for one
build instead of racing.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from vilms.runtime.local.launch import LLAMA_SERVER_ENV

PACKAGE = "llama-cpp-python"
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON",
               "-DLLAMA_BUILD_SERVER=ON", "-DBUILD_SHARED_LIBS=OFF")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vilms" / "llama-server" / importlib.metadata.version(PACKAGE)


def llama_server() -> Path:
    """The llama-server binary to test with; built (once per machine) when none is given."""
    given = os.environ.get(LLAMA_SERVER_ENV, "").strip()
    if given:
        return Path(given)
    folder = cache_dir()
    binary = folder / "bin" / "llama-server"
    if os.access(binary, os.X_OK):
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building it: wait for it
        if not os.access(binary, os.X_OK):
            _build(folder, binary)
    return binary


def _build(folder: Path, binary: Path) -> None:
    version = importlib.metadata.version(PACKAGE)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=folder))
    log = folder / "build.log"
    try:
        with open(log, "w") as out:
            def run(*argv: str | Path) -> None:
                out.write(f"$ {' '.join(map(str, argv))}\n")
                out.flush()
                subprocess.run([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, check=True)

            run(sys.executable, "-m", "pip", "download", f"{PACKAGE}=={version}", "--no-deps", "--no-binary", ":all:",
                "--dest", work)
            (sdist,) = work.glob("*.tar.gz")
            with tarfile.open(sdist) as tar:
                tar.extractall(work, filter="data")
            (source,) = work.glob("*/vendor/llama.cpp")
            run("cmake", "-S", source, "-B", work / "build", *CMAKE_FLAGS)
            run("cmake", "--build", work / "build", "--target", "llama-server", "-j", str(os.cpu_count() or 2))
        binary.parent.mkdir(exist_ok=True)
        temp = binary.with_name(binary.name + ".tmp")
        shutil.copy2(work / "build" / "bin" / "llama-server", temp)
        temp.replace(binary)
    except (subprocess.CalledProcessError, OSError, ValueError) as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"building llama-server {version} failed ({exc}); see {log}:\n{tail}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
