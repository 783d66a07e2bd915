"""``python without_realtime_rights.py CMD ARGS...``: run CMD unable to use real-time scheduling,
as on a machine where nobody granted it: CAP_SYS_NICE leaves the capability bounding set (root
would regain it at exec otherwise; dropping it needs root, without root there is nothing to
drop) and the rtprio limit becomes 0. Then exec, so CMD keeps the pid and the streams."""

import ctypes
import os
import resource
import sys

PR_CAPBSET_DROP = 24  # <linux/prctl.h>
CAP_SYS_NICE = 23  # <linux/capability.h>

if __name__ == "__main__":
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0) != 0 and os.geteuid() == 0:
        sys.exit(f"cannot drop CAP_SYS_NICE: {os.strerror(ctypes.get_errno())}")
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    os.execv(sys.argv[1], sys.argv[1:])
