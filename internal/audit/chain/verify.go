package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// ProblemKind classifies a broken chain.
type ProblemKind string

// Kinds of problems Verify reports.
const (
	Altered       ProblemKind = "altered"        // the record's content no longer matches its hash, or it was rehashed
	Removed       ProblemKind = "removed"        // a sequence number is missing
	Reordered     ProblemKind = "reordered"      // records appear out of order
	Truncated     ProblemKind = "truncated"      // records after the end were removed (a checkpoint names a later one)
	Rewritten     ProblemKind = "rewritten"      // the chain is consistent but differs from a signed checkpoint
	BadCheckpoint ProblemKind = "bad-checkpoint" // a checkpoint signature does not verify
)

// Problem is the first break found in one node's chain.
type Problem struct {
	Node   string
	Seq    uint64 // the first record affected
	Kind   ProblemKind
	Detail string
}

func (p Problem) String() string {
	return fmt.Sprintf("node %q record %d: %s: %s", p.Node, p.Seq, p.Kind, p.Detail)
}

// NodeReport is the result of walking one chain.
type NodeReport struct {
	Node        string
	Records     uint64 // records verified before the first problem
	Head        []byte // hash of the last verified record
	Checkpoints int
	Problem     *Problem
}

// Report is the result of Verify.
type Report struct {
	Nodes []NodeReport
}

// OK reports whether every chain verified.
func (r Report) OK() bool { return len(r.Problems()) == 0 }

// Problems lists the first problem of each broken chain.
func (r Report) Problems() []Problem {
	var out []Problem
	for _, n := range r.Nodes {
		if n.Problem != nil {
			out = append(out, *n.Problem)
		}
	}
	return out
}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	// CheckSignature verifies a checkpoint's signature (for example with the
	// server's public keys); nil skips signature checks.
	CheckSignature func(Checkpoint) error
}

var errStop = errors.New("stop")

// Verify re-walks every chain in src and reports, per node, the first
// altered, removed or reordered record.
func Verify(ctx context.Context, src Source, opts VerifyOptions) (Report, error) {
	nodes, err := src.Nodes(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit verify: list nodes: %w", err)
	}
	var rep Report
	for _, n := range nodes {
		nr, err := VerifyNode(ctx, src, n, opts)
		if err != nil {
			return rep, err
		}
		rep.Nodes = append(rep.Nodes, nr)
	}
	return rep, nil
}

// VerifyNode walks the chain of one node.
func VerifyNode(ctx context.Context, src Source, node string, opts VerifyOptions) (NodeReport, error) {
	rep := NodeReport{Node: node, Head: Genesis}
	cps, err := src.Checkpoints(ctx, node)
	if err != nil {
		return rep, fmt.Errorf("audit verify: checkpoints of %q: %w", node, err)
	}
	rep.Checkpoints = len(cps)
	fail := func(seq uint64, kind ProblemKind, format string, args ...any) error {
		rep.Problem = &Problem{Node: node, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
		return errStop
	}
	bySeq := make(map[uint64]Checkpoint, len(cps))
	var lastCP uint64
	for _, cp := range cps {
		if cp.Node != node {
			fail(cp.Seq, BadCheckpoint, "checkpoint names node %q", cp.Node)
			return rep, nil
		}
		if opts.CheckSignature != nil {
			if err := opts.CheckSignature(cp); err != nil {
				fail(cp.Seq, BadCheckpoint, "checkpoint signature does not verify: %v", err)
				return rep, nil
			}
		}
		bySeq[cp.Seq] = cp
		lastCP = max(lastCP, cp.Seq)
	}

	expect, prev := uint64(1), Genesis
	var gap *Entry
	var goodCP uint64
	err = src.Scan(ctx, node, func(e Entry) error {
		if gap != nil {
			if e.Seq == expect {
				return fail(expect, Reordered, "record %d is stored after record %d", expect, gap.Seq)
			}
			return fail(expect, Removed, "records %d to %d are missing", expect, gap.Seq-1)
		}
		switch {
		case e.Node != node:
			return fail(e.Seq, Altered, "record is labelled with node %q", e.Node)
		case e.Seq > expect:
			g := e
			gap = &g
			return nil
		case e.Seq < expect:
			return fail(e.Seq, Reordered, "record %d is stored again after record %d", e.Seq, expect-1)
		case !e.Valid():
			return fail(e.Seq, Altered, "content does not match its hash")
		case !bytes.Equal(e.Prev, prev):
			return fail(e.Seq-1, Altered, "record %d was changed and rehashed: record %d no longer links to it", e.Seq-1, e.Seq)
		}
		if cp, ok := bySeq[e.Seq]; ok {
			if !bytes.Equal(cp.Hash, e.Hash) {
				return fail(goodCP+1, Rewritten, "records %d to %d differ from the checkpoint signed at %s", goodCP+1, e.Seq, cp.Time.UTC().Format("2006-01-02T15:04:05Z"))
			}
			goodCP = e.Seq
		}
		prev, expect = e.Hash, expect+1
		rep.Records, rep.Head = e.Seq, e.Hash
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return rep, fmt.Errorf("audit verify: scan %q: %w", node, err)
	}
	if rep.Problem != nil {
		return rep, nil
	}
	if gap != nil {
		fail(expect, Removed, "records %d to %d are missing", expect, gap.Seq-1)
		return rep, nil
	}
	if lastCP > rep.Records {
		fail(rep.Records+1, Truncated, "the chain ends at record %d but a checkpoint names record %d", rep.Records, lastCP)
	}
	return rep, nil
}

// ErrUnsigned is reported for a checkpoint without a signature when
// signatures are checked.
var ErrUnsigned = errors.New("checkpoint is not signed")

// SignatureChecker adapts a JWS verifier such as (*keys.Manager).Verify to
// VerifyOptions.CheckSignature: the signature must verify with one of algs
// and type CheckpointType, and its claims must name the checkpoint's node,
// sequence number and hash.
func SignatureChecker(verify func(raw string, algs []string, typ string, claims any) error, algs []string) func(Checkpoint) error {
	return func(cp Checkpoint) error {
		if cp.Signature == "" {
			return ErrUnsigned
		}
		var got CheckpointClaims
		if err := verify(cp.Signature, algs, CheckpointType, &got); err != nil {
			return err
		}
		if want := cp.Claims(); got.Node != want.Node || got.Seq != want.Seq || got.Hash != want.Hash {
			return fmt.Errorf("signed claims (node %q, record %d, hash %s) do not match the stored checkpoint", got.Node, got.Seq, got.Hash)
		}
		return nil
	}
}
