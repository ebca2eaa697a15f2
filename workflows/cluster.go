package workflows

import (
	"context"

	"github.com/runfleet/runfleet/queue"
)

// Cluster is a named pool of runners; jobs are submitted to one.
type Cluster = queue.Cluster

// Errors returned by cluster and job calls; test with errors.Is.
var (
	ErrClusterNotFound = queue.ErrClusterNotFound
	ErrClusterExists   = queue.ErrClusterExists
	ErrInvalidSlug     = queue.ErrInvalidSlug
	ErrInvalidTask     = queue.ErrInvalidIdentifier
	ErrJobNotFound     = queue.ErrJobNotFound
	ErrJobCompleted    = queue.ErrJobCompleted
)

// ClusterClient manages clusters. Slugs match ^[a-z0-9][a-z0-9-]{0,99}$.
type ClusterClient struct{ c *Client }

// Create creates a cluster; name is a display name (default: the slug).
func (cc *ClusterClient) Create(ctx context.Context, slug, name string) (Cluster, error) {
	return cc.c.q.CreateCluster(ctx, slug, name)
}

// Get returns one cluster.
func (cc *ClusterClient) Get(ctx context.Context, slug string) (Cluster, error) {
	return cc.c.q.GetCluster(ctx, slug)
}

// List returns every cluster, sorted by slug.
func (cc *ClusterClient) List(ctx context.Context) ([]Cluster, error) {
	return cc.c.q.ListClusters(ctx)
}

// Delete removes a cluster. Jobs submitted to it keep their records.
func (cc *ClusterClient) Delete(ctx context.Context, slug string) error {
	return cc.c.q.DeleteCluster(ctx, slug)
}
