package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Every request client-go makes is counted by method and code, in each
// registry New makes (a process has one; tests make many).
func TestAPIRequestsCounted(t *testing.T) {
	first, second := New(), New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
	}))
	defer srv.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(apiRequests.WithLabelValues("DELETE", "404"))
	for range 3 {
		_ = client.CoreV1().Pods("ns").Delete(context.Background(), "p", metav1.DeleteOptions{})
	}
	if got := testutil.ToFloat64(apiRequests.WithLabelValues("DELETE", "404")) - before; got != 3 {
		t.Errorf("counted %v DELETEs answered 404; want 3", got)
	}
	for _, m := range []*Metrics{first, second} {
		if n, err := testutil.GatherAndCount(m.Registry, "image_cache_api_requests_total"); err != nil || n == 0 {
			t.Errorf("a registry does not serve image_cache_api_requests_total (%d series, %v)", n, err)
		}
	}
}
