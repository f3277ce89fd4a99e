//go:build !race

package argo

// raceEnabled: see race_on_test.go.
const raceEnabled = false
