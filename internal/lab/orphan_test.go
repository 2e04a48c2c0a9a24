package lab

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

func TestWhileRecorded(t *testing.T) {
	dir := t.TempDir()
	st := &State{Dir: dir, Procs: []Proc{{Name: "zonegen", Pid: os.Getpid()}}}
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	ctx := WhileRecorded(context.Background(), dir, "zonegen", os.Getpid(), 5*time.Millisecond, 3)
	select {
	case <-ctx.Done():
		t.Fatalf("cancelled while recorded: %v", context.Cause(ctx))
	case <-time.After(100 * time.Millisecond):
	}
	// Another generator recorded: this one must stop.
	st.Procs[0].Pid = os.Getpid() + 1
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
		if !errors.Is(context.Cause(ctx), ErrNotRecorded) {
			t.Fatalf("cause %v", context.Cause(ctx))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("not cancelled when the lab records another pid")
	}
	// The lab removed.
	gone := WhileRecorded(context.Background(), t.TempDir()+"/none", "zonegen", os.Getpid(), 5*time.Millisecond, 3)
	select {
	case <-gone.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("not cancelled when the lab is gone")
	}
}
