package remote

import "github.com/vmasync/vmasync/internal/vzdump"

// Dump is one vzdump VM backup file in a dump directory (package vzdump
// finds and names them).
type Dump = vzdump.Dump
