//go:build race

package zonestore

// raceSlowdown scales timing bounds: the race detector makes this code
// about seven times slower.
const raceSlowdown = 7
