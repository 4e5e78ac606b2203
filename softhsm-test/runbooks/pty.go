package runbooks

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// A Terminal runs a command on a new pseudo-terminal, as an officer's
// shell would: the command's stdin, stdout and stderr are the terminal, and
// it is the command's controlling terminal, so /dev/tty reaches it — the
// PIN prompt and the confirmation read there. Every time the output stops at
// an unfinished line, Answer is asked what to type; it returns the text to
// type (without the newline), whether to type it with the terminal's echo
// off (a secret), and ok false when the line is no prompt it knows.
type Terminal struct {
	Answer func(partial string) (text string, secret, ok bool)
	// Timeout ends the command (its whole process group) after this long.
	Timeout time.Duration
	// Idle ends it when it has printed nothing for this long after an
	// unfinished line: a prompt nobody answers. Zero means 20 seconds.
	Idle time.Duration
}

// Ctrl-C, as typed on the terminal: the line discipline turns it into
// SIGINT for the foreground process group.
const ctrlC = "\x03"

// Run runs cmd on a new terminal and returns everything it printed there
// (with "\r\n" made "\n") and its exit status. cmd's Stdin, Stdout, Stderr
// and SysProcAttr are set here.
func (term *Terminal) Run(cmd *exec.Cmd) (string, int, error) {
	master, slave, err := openPTY()
	if err != nil {
		return "", -1, err
	}
	defer master.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		return "", -1, err
	}
	slave.Close()
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	sess := &ptySession{term: term, master: master, changed: time.Now(), answered: -1}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sess.read()
	}()
	timeout := cmp.Or(term.Timeout, 5*time.Minute)
	timer := time.AfterFunc(timeout, kill)
	idle := cmp.Or(term.Idle, 20*time.Second)
	exited := make(chan struct{})
	go sess.watch(idle, exited, kill)
	waitErr := cmd.Wait()
	close(exited)
	stopped := !timer.Stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second): // a background process still holds the terminal
		kill()
		<-done
	}

	sess.mu.Lock()
	defer sess.mu.Unlock()
	text := strings.ReplaceAll(sess.out.String(), "\r\n", "\n")
	switch {
	case sess.waiting != "":
		return text, -1, fmt.Errorf("stopped after %v waiting for input at %q: nothing in the runbook answers it", idle, sess.waiting)
	case stopped:
		return text, -1, fmt.Errorf("still running after %v: stopped", timeout)
	case sess.answerErr != nil:
		return text, -1, sess.answerErr
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		return text, ee.ExitCode(), nil
	} else if waitErr != nil {
		return text, -1, waitErr
	}
	return text, 0, nil
}

// ptySession is one command's terminal: what it printed, and what was
// typed.
type ptySession struct {
	term   *Terminal
	master *os.File

	mu        sync.Mutex
	out       bytes.Buffer
	changed   time.Time // when the output last grew
	answered  int       // output length at the last answer
	answerErr error
	waiting   string // the unanswered prompt the command was stopped at
}

// read copies the terminal's output until every process has closed it (the
// master then reads EIO), answering each prompt once.
func (p *ptySession) read() {
	buf := make([]byte, 4096)
	for {
		n, err := p.master.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.changed = time.Now()
			text := p.out.String()
			answered := p.answered
			p.mu.Unlock()
			if i := strings.LastIndexByte(text, '\n'); len(text) != answered && i < len(text)-1 && p.term.Answer != nil {
				if ans, secret, ok := p.term.Answer(strings.TrimRight(text[i+1:], "\r")); ok {
					err := typeOn(p.master, ans, secret)
					p.mu.Lock()
					p.answered = len(text)
					if err != nil {
						p.answerErr = err
					}
					p.mu.Unlock()
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// watch kills the command when its output has stopped at an unfinished
// line for idle: it waits for input nobody will type.
func (p *ptySession) watch(idle time.Duration, exited <-chan struct{}, kill func()) {
	tick := time.NewTicker(idle / 10)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			return
		case <-tick.C:
		}
		p.mu.Lock()
		text := p.out.String()
		i := strings.LastIndexByte(text, '\n')
		if time.Since(p.changed) > idle && i < len(text)-1 {
			p.waiting = strings.TrimSpace(text[i+1:])
			p.mu.Unlock()
			kill()
			return
		}
		p.mu.Unlock()
	}
}

// typeOn types text and Enter on the terminal. A secret is typed only once
// the program has turned the echo off (as an officer would see it), so that
// it never appears in the output; Ctrl-C is typed alone.
func typeOn(master *os.File, text string, secret bool) error {
	if text == ctrlC {
		_, err := master.WriteString(ctrlC)
		return err
	}
	if secret {
		for deadline := time.Now().Add(5 * time.Second); echoOn(master); {
			if time.Now().After(deadline) {
				return errors.New("the program asked for a secret but left the terminal's echo on")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	_, err := master.WriteString(text + "\n")
	return err
}

// echoOn reports whether the terminal echoes what is typed. On Linux the
// master side reports the terminal's settings.
func echoOn(master *os.File) bool {
	var t syscall.Termios
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t))); errno != 0 {
		return false
	}
	return t.Lflag&syscall.ECHO != 0
}

// openPTY opens a new pseudo-terminal pair (Linux /dev/ptmx).
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("unlocking the pseudo-terminal: %w", errno)
	}
	var n uint32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); errno != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("naming the pseudo-terminal: %w", errno)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}
