"""GGUF weights named by a Hugging Face repo, found in the local Hugging Face cache only.

llama-cpp-python's server downloads ``--hf_model_repo_id`` weights itself, which needs the
network even when the file is cached. The runner instead looks the file up offline
(``huggingface_hub``'s cache, ``HF_HUB_CACHE``/``HF_HOME`` honoured) and passes a plain
``--model`` path; when the file is not cached it says how to fetch it.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from vilms.compiler.errors import ActionError

_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def cached_gguf(repo: str, glob: str) -> Path:
    """The cached file of ``repo`` matching ``glob`` (case-insensitive; the first shard of a
    split GGUF). Raises :class:`ActionError` when it is not cached."""
    fetch = f"huggingface-cli download {repo} --include '{glob}'  (or hf download {repo} --include '{glob}')"
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ActionError(f"weights hf:{repo} ({glob}) need huggingface_hub to be found in the local cache",
                          hint="pip install huggingface_hub, download the file, or point the model's gguf: at a file:") from None
    try:
        folder = Path(snapshot_download(repo, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ActionError(f"weights hf:{repo} ({glob}) are not in the local Hugging Face cache; "
                          "the local runner does not download", hint=f"fetch them first: {fetch}") from None
    found = sorted(p for p in folder.rglob("*") if fnmatch.fnmatch(p.name.lower(), glob.lower()) and p.is_file())
    if not found:
        raise ActionError(f"the cached snapshot of hf:{repo} has no file matching {glob} in {folder}",
                          hint=f"fetch it first: {fetch}")
    firsts = [p for p in found if (m := _SHARD.search(p.name)) and int(m.group(1)) == 1]
    if len(firsts) == 1 and all(_SHARD.search(p.name) for p in found):
        return firsts[0]  # llama.cpp loads the other shards beside it
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ActionError(f"several cached files of hf:{repo} match {glob}: {names}",
                          hint="set models.<name>.quantization.llamacpp in vilms.yaml to pick one")
    return found[0]
