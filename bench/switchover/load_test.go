package main

import (
	"testing"
	"time"
)

func TestWriteGap(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	acks := []ack{
		{1, 5001, at(0)}, {2, 5001, at(5)}, {3, 5001, at(10)},
		// switch starts at 8 ms; the old primary still acks id 3
		{4, 5002, at(1300)}, {5, 5002, at(1305)},
	}
	tests := []struct {
		name                string
		start               time.Time
		old, new            int
		wantGap             time.Duration
		wantErr             bool
		wantLast, wantFirst int64
	}{
		{"gap from last old ack to first new ack", at(8), 5001, 5002, 1290 * time.Millisecond, false, 3, 4},
		{"new primary never acked", at(8), 5001, 5003, 0, true, 0, 0},
		{"old primary never acked", at(8), 5009, 5002, 0, true, 0, 0},
		{"acks before the start do not count as new", at(1400), 5002, 5001, 0, true, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			last, first, err := writeGap(acks, tc.start, tc.old, tc.new)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if last.ID != tc.wantLast || first.ID != tc.wantFirst || first.At.Sub(last.At) != tc.wantGap {
				t.Errorf("last %d first %d gap %s; want %d %d %s", last.ID, first.ID, first.At.Sub(last.At), tc.wantLast, tc.wantFirst, tc.wantGap)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{ms(7), 7 * time.Millisecond},
		{ms(1, 2, 9), 2 * time.Millisecond},
		{ms(1, 2, 4, 9), 3 * time.Millisecond},
	}
	for _, tc := range tests {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
