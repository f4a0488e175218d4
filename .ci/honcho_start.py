"""`honcho`, with a longer grace between SIGTERM and SIGKILL when stopping (Ctrl-C).

A Celery worker's warm shutdown takes about 5 s even when idle (Celery bounds its broker
sockets with a 5 s timeout while it stops) and waits for the tasks it is running; honcho
sends SIGKILL after 5 s, which cut such a stop short. STOP_GRACE_SECONDS (default 20)
is how long each process may take to end on SIGTERM."""

import os
import sys

import honcho.manager
from honcho.command import main

honcho.manager.KILL_WAIT = float(os.environ.get("STOP_GRACE_SECONDS", "20"))
sys.exit(main())
