//go:build !race

package zonestore

const raceSlowdown = 1
