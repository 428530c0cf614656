"""The code that runs inside the sandbox: the zygote (the families' supervisor) and kernels.

Standard library only, so that it runs on the sandbox's own Python runtime (a venv chosen for
the model's code, never the service's): the jail shows this package at
``/opt/toolfleet/lib/toolfleet/box`` and nothing else of toolfleet. The service side
(``toolfleet.sandbox``) imports the framing and message types from here.

Who runs what (see docs/sandbox.md, "Security model"):

- the **zygote** (``zygote.py``) is a template interpreter with the heavy libraries imported,
  and the **supervisor** (``supervisor.py``) of every family opened on it: root, outside every
  limit it enforces, it makes each family's namespaces, forks its kernels and programs, holds
  their output pipes, enforces deadlines and output caps, freezes the family between calls,
  and does the files API: everything the trainer trusts comes from it;
- a **kernel** (``kernel.py``) runs the model's Python as the family's uid; what it reports
  (the trailing expression's value, images, the exception) is treated as model-produced.
"""
