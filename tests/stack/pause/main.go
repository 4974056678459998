// Command pause is the sandbox ("pause") container of the local test stack's pods. It holds
// the pod's namespaces open while the pod lives, reaps orphaned children (it is PID 1 when
// the pod shares its process namespace) and exits 0 on SIGTERM or SIGINT, as the kubelet
// expects of a sandbox. No registry we can reach serves registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every child that has exited, so none stays a zombie.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
