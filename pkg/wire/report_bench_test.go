package wire

import "testing"

// BenchmarkDecodeReport reads the report of a node with 100 images, as
// status does for every node: one ReportReader for all of them.
func BenchmarkDecodeReport(b *testing.B) {
	raw, _ := EncodeReport(reportStates(100))
	var rr ReportReader
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := rr.Decode("node-a", raw); err != nil {
			b.Fatal(err)
		}
	}
}
