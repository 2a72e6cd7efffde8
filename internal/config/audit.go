package config

import (
	"regexp"
	"strings"
	"time"
)

// Audit configures the durable audit trail.
type Audit struct {
	Mode               string        `yaml:"mode" env:"FHIRGATE_AUDIT_MODE" doc:"sync (a response waits until its audit event is on disk) or async (lower latency; events queued at a crash are lost)"`
	Sink               string        `yaml:"sink" env:"FHIRGATE_AUDIT_SINK" doc:"store (SQLite: {data_dir}/audit.db; PostgreSQL: tables in the main database), file (JSON-lines under audit.dir) or log (operational log only, not durable)"`
	Dir                string        `yaml:"dir" env:"FHIRGATE_AUDIT_DIR" doc:"directory of the file sink; {data_dir}/audit when empty"`
	MaxFileBytes       int           `yaml:"max_file_bytes" env:"FHIRGATE_AUDIT_MAX_FILE_BYTES" doc:"file sink segment size before rotation, in bytes"`
	NodeID             string        `yaml:"node_id" env:"FHIRGATE_AUDIT_NODE_ID" doc:"name of this node's audit hash chain; the host name when empty"`
	CheckpointEvery    int           `yaml:"checkpoint_every" env:"FHIRGATE_AUDIT_CHECKPOINT_EVERY" doc:"audit records between signed checkpoints"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval" env:"FHIRGATE_AUDIT_CHECKPOINT_INTERVAL" doc:"longest time between signed checkpoints of new records"`
}

// Audit defaults.
const (
	AuditModeSync             = "sync"
	AuditModeAsync            = "async"
	AuditSinkStore            = "store"
	AuditSinkFile             = "file"
	AuditSinkLog              = "log"
	DefaultAuditMaxFileBytes  = 64 << 20
	DefaultCheckpointEvery    = 10000
	DefaultCheckpointInterval = time.Minute
)

func defaultAudit() Audit {
	return Audit{
		Mode: AuditModeSync, Sink: AuditSinkStore, MaxFileBytes: DefaultAuditMaxFileBytes,
		CheckpointEvery: DefaultCheckpointEvery, CheckpointInterval: DefaultCheckpointInterval,
	}
}

var auditNodeID = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$`)

func (c *Config) validateAudit(add func(key, format string, args ...any)) {
	a := c.Audit
	if a.Mode != AuditModeSync && a.Mode != AuditModeAsync {
		add("audit.mode", "must be sync or async, got %q", a.Mode)
	}
	switch a.Sink {
	case AuditSinkStore, AuditSinkFile, AuditSinkLog:
	default:
		add("audit.sink", "must be store, file or log, got %q", a.Sink)
	}
	if a.MaxFileBytes < 4096 {
		add("audit.max_file_bytes", "must be at least 4096, got %d", a.MaxFileBytes)
	}
	if a.NodeID != "" && !auditNodeID.MatchString(a.NodeID) {
		add("audit.node_id", "must be 1-64 of A-Z a-z 0-9 . _ - (not starting with . or -), got %q", a.NodeID)
	}
	if a.CheckpointEvery < 1 {
		add("audit.checkpoint_every", "must be at least 1, got %d", a.CheckpointEvery)
	}
	if a.CheckpointInterval < time.Second {
		add("audit.checkpoint_interval", "must be at least 1s, got %s", a.CheckpointInterval)
	}
}

// AuditDir is the file sink's directory: audit.dir, or {data_dir}/audit.
func (c *Config) AuditDir() string {
	if c.Audit.Dir != "" {
		return c.Audit.Dir
	}
	return c.DataDir + "/audit"
}

// AuditSQLitePath is the SQLite file of the store sink on SQLite:
// {data_dir}/audit.db, its own file so that audit group commits (fsynced)
// and the main store's writes never wait for each other's write lock.
func (c *Config) AuditSQLitePath() string {
	return strings.TrimRight(c.DataDir, "/") + "/audit.db"
}
