package broker

import (
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListGroups: v0-5
//
// Behavior:
// * Every group the coordinator knows, including Empty groups that only
//   hold committed offsets. StatesFilter (v4+) matches Kafka's state names
//   case-insensitively; TypesFilter (v5+) matches "classic", the only type.

func handleListGroups(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ListGroupsRequest)
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	if len(r.TypesFilter) > 0 {
		ok := false
		for _, t := range r.TypesFilter {
			ok = ok || strings.EqualFold(t, "classic")
		}
		if !ok {
			return now(resp)
		}
	}
	for _, g := range c.b.groups.snapshot() {
		g.mu.Lock()
		state, pt := g.state, g.protocolType
		g.mu.Unlock()
		if state == groupDead {
			continue
		}
		if len(r.StatesFilter) > 0 {
			ok := false
			for _, s := range r.StatesFilter {
				ok = ok || strings.EqualFold(s, state.String())
			}
			if !ok {
				continue
			}
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.name, pt, state.String(), "classic"
		resp.Groups = append(resp.Groups, lg)
	}
	sort.Slice(resp.Groups, func(i, j int) bool { return resp.Groups[i].Group < resp.Groups[j].Group })
	return now(resp)
}
