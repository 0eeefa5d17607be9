package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Service is a pool (or a node's objects service) as its nodes register
// it with NATS micro: what their $SRV.INFO answers say.
type Service struct {
	Name     string   // the pool, or the objects service's name
	Versions []string // the versions its nodes registered, sorted
	Nodes    []string // the ids of the nodes that serve it, sorted
}

// maxDiscovered bounds the answers Discover reads: anyone allowed to
// answer on $SRV.INFO could flood it.
const maxDiscovered = 4096

// Discover lists the services of this client's prefix that the nodes
// reachable now serve: it asks every micro service ($SRV.INFO, NATS's
// own discovery) and reads the answers that come within wait.
func (c *Client) Discover(ctx context.Context, wait time.Duration) ([]Service, error) {
	sub, err := c.nc.SubscribeSync(c.nc.NewInbox())
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(micro.APIPrefix+".INFO", sub.Subject, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	byName := map[string]*Service{}
	for range maxDiscovered {
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil || errors.Is(err, nats.ErrNoResponders) {
			break // wait is over, or no micro service at all listens
		}
		if err != nil {
			return nil, err
		}
		c.addService(byName, m.Data)
	}
	out := make([]Service, 0, len(byName))
	for _, s := range byName {
		slices.Sort(s.Nodes)
		slices.Sort(s.Versions)
		s.Versions = slices.Compact(s.Versions)
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// addService records one $SRV.INFO answer, if it is a node's of this
// client's prefix: a node's metadata names it, and every endpoint's
// subject is under the prefix. Anyone may answer: checked, else ignored.
func (c *Client) addService(byName map[string]*Service, data []byte) {
	var info micro.Info
	if len(data) > 1<<16 || json.Unmarshal(data, &info) != nil {
		return
	}
	node := info.Metadata["node"]
	if checkName("node", node) != nil || len(info.Endpoints) == 0 || len(info.Name) > 128 || len(info.Version) > 64 {
		return
	}
	for _, e := range info.Endpoints {
		if !strings.HasPrefix(e.Subject, c.s.prefix+".") {
			return
		}
	}
	s := byName[info.Name]
	if s == nil {
		if len(byName) >= maxNodes {
			return
		}
		s = &Service{Name: info.Name}
		byName[info.Name] = s
	}
	if !slices.Contains(s.Nodes, node) && len(s.Nodes) < maxNodes {
		s.Nodes = append(s.Nodes, node)
		s.Versions = append(s.Versions, info.Version)
	}
}
