"""The ViLMS trainer image (runtime/trainer/)."""

from __future__ import annotations

# the project folder inside the trainer container (runtime/trainer/Dockerfile: VILMS_PROJECT, WORKDIR)
WORKSPACE = "/workspace"
