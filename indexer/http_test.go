package indexer

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler(newTestEngine(t, mappingLog(), nil), DefaultLimits()))
	defer srv.Close()
	cases := []struct {
		body string
		code int
		bad  string
	}{
		{`{"topics":["orders"],"query":"city:paris","sort":"time"}`, 200, ""},
		{`{"topics":["orders"],"query":"city:paris order.total:>>1"}`, 400, "order.total:>>1"},
		{`{"topics":["nope"],"query":"x"}`, 404, ""},
		{`{"topics":["orders"],"query":"x","from":"yesterday"}`, 400, ""},
		{`{"topics":["orders"],"query":"x","limit":-1}`, 400, ""},
		{`{"topics":["orders"],"qurey":"x"}`, 400, ""},
		{`not json`, 400, ""},
	}
	for _, c := range cases {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.code {
			t.Errorf("%s: status %d (%v), want %d: %v", c.body, resp.StatusCode, err, c.code, out)
			continue
		}
		if c.code == 200 {
			hits := out["hits"].([]any)
			if len(hits) != 2 || out["total"].(float64) != 2 {
				t.Errorf("%s: %v", c.body, out)
			}
			h := hits[0].(map[string]any)
			if h["partition"].(float64) != 0 || h["offset"].(float64) != 0 || h["value"].(map[string]any)["city"] != "paris" {
				t.Errorf("first hit %v", h)
			}
		} else if out["error"] == "" || (c.bad != "" && out["bad"] != c.bad) {
			t.Errorf("%s: error answer %v", c.body, out)
		}
	}
}
