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
//   case-insensitively; TypesFilter (v5+) matches "classic" or "consumer"
//   (KIP-848 groups, whose states are Empty, Assigning, Reconciling,
//   Stable).

func handleListGroups(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ListGroupsRequest)
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	typeOK := func(typ string) bool {
		if len(r.TypesFilter) == 0 {
			return true
		}
		for _, t := range r.TypesFilter {
			if strings.EqualFold(t, typ) {
				return true
			}
		}
		return false
	}
	for _, g := range c.b.groups.snapshot() {
		g.mu.Lock()
		st, pt, typ := g.state, g.protocolType, "classic"
		state := st.String()
		if g.cg != nil && len(g.members) == 0 && st == groupEmpty {
			state, pt, typ = g.cg.stateLocked(), "consumer", "consumer"
		}
		g.mu.Unlock()
		if st == groupDead || !typeOK(typ) {
			continue
		}
		if len(r.StatesFilter) > 0 {
			ok := false
			for _, s := range r.StatesFilter {
				ok = ok || strings.EqualFold(s, state)
			}
			if !ok {
				continue
			}
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.name, pt, state, typ
		resp.Groups = append(resp.Groups, lg)
	}
	sort.Slice(resp.Groups, func(i, j int) bool { return resp.Groups[i].Group < resp.Groups[j].Group })
	return now(resp)
}
