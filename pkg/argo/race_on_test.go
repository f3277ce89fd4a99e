//go:build race

package argo

// raceEnabled: the race detector allocates for its own bookkeeping, so
// tests do not hold allocations to the budget's bounds under it.
const raceEnabled = true
