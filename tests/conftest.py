"""Every Ray the tests start is private, as `flotilla serve`'s is: loopback only, instance actors at
the test process's niceness (`controlplane.runtime.private_ray`, set before anything imports Ray)."""

import os

from controlplane.runtime.private_ray import prepare_private_ray

prepare_private_ray(os.environ)
