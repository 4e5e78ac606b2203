//go:build crashtest

package ceremony

// The fault hook of test builds (go build -tags crashtest): with
// ROOTKEEPER_TEST_FAULT=ACTION:OP:N the store kills the process with
// SIGKILL (ACTION kill) or fails with ENOSPC (enospc) or EIO (eio)
// right before its Nth operation OP ("write", "fsync", "rename",
// "remove", "mkdir", or "any" for all of them), and says so on stderr.
// Only softhsm-test/e2e builds the binary this way.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

func init() {
	spec := os.Getenv("ROOTKEEPER_TEST_FAULT")
	parts := strings.Split(spec, ":")
	if len(parts) != 3 {
		return
	}
	action, kind := parts[0], parts[1]
	at, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || at < 1 {
		return
	}
	var n atomic.Int64
	faultAt = func(op, path string) error {
		if kind != "any" && kind != op {
			return nil
		}
		if n.Add(1) != at {
			return nil
		}
		fmt.Fprintf(os.Stderr, "rootkeeper-test-fault: %s before %s #%d (%s)\n", action, op, at, path)
		switch action {
		case "kill":
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		case "enospc":
			return syscall.ENOSPC
		case "eio":
			return syscall.EIO
		}
		return nil
	}
}
