package broker

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions: v0-4
//
// Behavior:
// * Lists every API key in the apis table with the versions served.
// * An unknown (newer) request version is answered in v0 with
//   UNSUPPORTED_VERSION and the full table (KIP-511), so clients downgrade.
// * No finalized features are advertised (no KIP-584 feature flags yet).

func handleApiVersions(c *conn, req *request) reply {
	return now(c.b.apiVersionsResponse(req.GetVersion()))
}

func (b *Broker) apiVersionsResponse(version int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(version)
	for key, r := range apis {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = int16(key), r.min, r.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	sort.Slice(resp.ApiKeys, func(i, j int) bool { return resp.ApiKeys[i].ApiKey < resp.ApiKeys[j].ApiKey })
	return resp
}
