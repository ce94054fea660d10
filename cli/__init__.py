"""The `vilms` command line (package ``vilms.cli``): every command, each option defined once,
and the one error boundary that turns errors into messages and exit codes.

The only package that imports every layer: ``compiler`` (ground floor), ``runtime`` and
``trainers``. Command bodies import what they run only when they run, so the compile path
(validate, build, diff, schema) never imports torch, transformers or the gateway.
"""
