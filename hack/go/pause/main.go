// Command pause is the pod sandbox ("infra") container of the local real node: it holds
// the pod's namespaces open, reaps orphaned children and exits on SIGINT or SIGTERM.
// Kubernetes' own pause image cannot be pulled without a registry, so the node builds
// this one from source; it does what kubernetes/build/pause/linux/pause.c does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
