"""The shared test harness of Hub the Hard Way: test VMs, stage images, a hub client."""
