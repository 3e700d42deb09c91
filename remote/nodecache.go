package remote

import (
	"container/list"
	"sync"
	"unsafe"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/tree"
)

// nodeCacheSize bounds the decoded tree nodes a repository keeps for the
// ArchiveReaders of its format 3 backups (mount, pull --disk): 8 MiB,
// about 25,000 nodes of the average 8 entries (200,000 chunks, 1.5 GiB
// of archive below its leaves), or 2,300 of the largest. One cache
// serves every backup: nodes are named by their content, and the
// backups of a VM share most of theirs.
const nodeCacheSize = 8 << 20

// nodeCache is an LRU of decoded, checked tree nodes, bounded in bytes.
type nodeCache struct {
	mu      sync.Mutex
	max     int64
	held    int64
	lru     *list.List // of *cachedNode, most recent first
	entries map[nodeKey]*list.Element
}

// nodeKey names a node parsed under a chunker's maximum chunk length
// (Parse's bounds depend on it; a repository has one).
type nodeKey struct {
	id       tree.ID
	maxChunk uint32
}

// cachedNode is a node that parsed and matched its hash, with what it
// holds (tree.Node.Sum): a reader compares these with what the parent it
// came through says, as tree.Node.Check does.
type cachedNode struct {
	key           nodeKey
	nd            *tree.Node
	level         int
	bytes, chunks uint64
	size          int64
}

func newCachedNode(nd *tree.Node) *cachedNode {
	e := &cachedNode{nd: nd, level: nd.Level}
	e.bytes, e.chunks = nd.Sum()
	// The entries, and about 200 bytes of node, list element and map
	// entry around them.
	e.size = 200 + int64(len(nd.Chunks))*int64(unsafe.Sizeof(chunkplan.ChunkRef{})) + int64(len(nd.Children))*int64(unsafe.Sizeof(tree.Ref{}))
	return e
}

// nodeCache returns the repository's cache of tree nodes.
func (r *Repository) nodeCache() *nodeCache {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes == nil {
		r.nodes = &nodeCache{max: nodeCacheSize, lru: list.New(), entries: map[nodeKey]*list.Element{}}
	}
	return r.nodes
}

// get returns the node id parsed under maxChunk, or nil.
func (c *nodeCache) get(id tree.ID, maxChunk uint32) *cachedNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[nodeKey{id, maxChunk}]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cachedNode)
}

// has reports whether the node is cached, without making it recent.
func (c *nodeCache) has(id tree.ID, maxChunk uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[nodeKey{id, maxChunk}]
	return ok
}

// put adds a node and drops the least recently used beyond the bound.
func (c *nodeCache) put(id tree.ID, maxChunk uint32, e *cachedNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.key = nodeKey{id, maxChunk}
	if el, ok := c.entries[e.key]; ok {
		c.lru.MoveToFront(el)
		return
	}
	c.entries[e.key] = c.lru.PushFront(e)
	c.held += e.size
	for c.held > c.max && c.lru.Len() > 1 {
		el := c.lru.Back()
		old := el.Value.(*cachedNode)
		c.lru.Remove(el)
		delete(c.entries, old.key)
		c.held -= old.size
	}
}
