"""What "hardened" means: the control catalog, profiles, and each mechanism's
apply side (what to write and run in a guest) and check side (evidence read
through a testinfra host). Knows nothing of VMs, SSH, QEMU or signing."""
