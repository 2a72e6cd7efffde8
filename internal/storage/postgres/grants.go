package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// CreateLaunch inserts l; ErrConflict if its hash exists.
func (s *Store) CreateLaunch(ctx context.Context, l *storage.Launch) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO launches (hash, context, created_at, expires_at, used_at)
		VALUES ($1, $2, $3, $4, $5)`, l.Hash, l.Context, tz(l.CreatedAt), tz(l.ExpiresAt), tz(l.UsedAt))
	return wrap("create launch", err)
}

// ConsumeLaunch marks the launch used in one statement; if it matched no
// row, a second read says why: ErrNotFound, ErrAlreadyUsed (checked before
// expiry) or ErrExpired. On any error no launch is returned.
func (s *Store) ConsumeLaunch(ctx context.Context, hash []byte, now time.Time) (*storage.Launch, error) {
	const cols = `hash, context, created_at, expires_at, used_at`
	scan := func(row pgx.Row) (*storage.Launch, error) {
		var l storage.Launch
		err := row.Scan(&l.Hash, &l.Context, ts(&l.CreatedAt), ts(&l.ExpiresAt), ts(&l.UsedAt))
		return &l, err
	}
	l, err := scan(s.pool.QueryRow(ctx, `UPDATE launches SET used_at = $2
		WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING `+cols, hash, now))
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, wrap("consume launch", err)
	}
	l, err = scan(s.pool.QueryRow(ctx, `SELECT `+cols+` FROM launches WHERE hash = $1`, hash))
	switch {
	case err != nil:
		return nil, wrap("consume launch", err)
	case !l.UsedAt.IsZero():
		return nil, wrap("consume launch", storage.ErrAlreadyUsed)
	case expired(micro(now), l.ExpiresAt):
		return nil, wrap("consume launch", storage.ErrExpired)
	}
	return nil, wrap("consume launch", errInconsistent)
}

const authRequestCols = `id, client_id, redirect_uri, state, scope, nonce, code_challenge, audience,
	launch, user_id, patient, response_mode, created_at, expires_at, prompt, dpop_jkt, pushed`

func scanAuthRequest(row pgx.Row) (*storage.AuthRequest, error) {
	var r storage.AuthRequest
	if err := row.Scan(&r.ID, &r.ClientID, &r.RedirectURI, &r.State, &r.Scope, &r.Nonce,
		&r.CodeChallenge, &r.Audience, &r.Launch, &r.UserID, &r.Patient, &r.ResponseMode,
		ts(&r.CreatedAt), ts(&r.ExpiresAt), &r.Prompt, &r.DPoPJKT, &r.Pushed); err != nil {
		return nil, err
	}
	return &r, nil
}

func authRequestArgs(r *storage.AuthRequest) []any {
	var launch any
	if r.Launch != nil {
		launch = *r.Launch
	}
	return []any{r.ID, r.ClientID, r.RedirectURI, r.State, r.Scope, r.Nonce, r.CodeChallenge,
		r.Audience, launch, r.UserID, r.Patient, r.ResponseMode, tz(r.CreatedAt), tz(r.ExpiresAt),
		r.Prompt, r.DPoPJKT, r.Pushed}
}

// CreateAuthRequest inserts r; ErrConflict if its id exists.
func (s *Store) CreateAuthRequest(ctx context.Context, r *storage.AuthRequest) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO auth_requests (`+authRequestCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`, authRequestArgs(r)...)
	return wrap("create auth request", err)
}

// GetAuthRequest returns the request; ErrExpired (and no request) if past ExpiresAt.
func (s *Store) GetAuthRequest(ctx context.Context, id string, now time.Time) (*storage.AuthRequest, error) {
	r, err := scanAuthRequest(s.pool.QueryRow(ctx, `SELECT `+authRequestCols+` FROM auth_requests WHERE id = $1`, id))
	if err != nil {
		return nil, wrap("get auth request", err)
	}
	if expired(now, r.ExpiresAt) {
		return nil, wrap("get auth request", storage.ErrExpired)
	}
	return r, nil
}

// UpdateAuthRequest reads the request (locking its row), applies update and
// writes it back in one transaction. The id cannot change. An error from
// update aborts.
func (s *Store) UpdateAuthRequest(ctx context.Context, id string, update func(*storage.AuthRequest) error) (*storage.AuthRequest, error) {
	var out *storage.AuthRequest
	err := s.tx(ctx, "update auth request", func(tx pgx.Tx) error {
		r, err := scanAuthRequest(tx.QueryRow(ctx, `SELECT `+authRequestCols+` FROM auth_requests WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if err := update(r); err != nil {
			return err
		}
		r.ID = id
		if err := execOne(ctx, tx, `UPDATE auth_requests SET client_id = $2, redirect_uri = $3, state = $4,
			scope = $5, nonce = $6, code_challenge = $7, audience = $8, launch = $9, user_id = $10,
			patient = $11, response_mode = $12, created_at = $13, expires_at = $14, prompt = $15,
			dpop_jkt = $16, pushed = $17 WHERE id = $1`,
			authRequestArgs(r)...); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteAuthRequest deletes the request; deleting a missing one is not an error.
func (s *Store) DeleteAuthRequest(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM auth_requests WHERE id = $1`, id)
	return wrap("delete auth request", err)
}

const authCodeCols = `hash, client_id, redirect_uri, code_challenge, scope, user_id, nonce, auth_time,
	context, family_id, created_at, expires_at, used_at, dpop_jkt, session_hash, amr, acr`

func scanAuthCode(row pgx.Row) (*storage.AuthCode, error) {
	var c storage.AuthCode
	if err := row.Scan(authCodeDest(&c)...); err != nil {
		return nil, err
	}
	return &c, nil
}

// authCodeDest is where the columns of authCodeCols scan into c.
func authCodeDest(c *storage.AuthCode) []any {
	return []any{&c.Hash, &c.ClientID, &c.RedirectURI, &c.CodeChallenge, &c.Scope, &c.UserID,
		&c.Nonce, ts(&c.AuthTime), &c.Context, &c.FamilyID, ts(&c.CreatedAt), ts(&c.ExpiresAt),
		ts(&c.UsedAt), &c.DPoPJKT, &c.SessionHash, &c.AMR, &c.ACR}
}

// CreateAuthCode inserts c; ErrConflict if its hash exists.
func (s *Store) CreateAuthCode(ctx context.Context, c *storage.AuthCode) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO auth_codes (`+authCodeCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		c.Hash, c.ClientID, c.RedirectURI, c.CodeChallenge, c.Scope, c.UserID, c.Nonce,
		tz(c.AuthTime), c.Context, c.FamilyID, tz(c.CreatedAt), tz(c.ExpiresAt), tz(c.UsedAt), c.DPoPJKT,
		c.SessionHash, c.AMR, c.ACR)
	return wrap("create auth code", err)
}

// ConsumeAuthCode marks the code used; see RedeemAuthCode.
func (s *Store) ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time) (*storage.AuthCode, error) {
	return s.redeemAuthCode(ctx, hash, now, nil)
}

// RedeemAuthCode reads the code with its user and runs exchange outside any
// transaction, then consumes the code and writes what exchange returned in
// one statement: one round trip and one commit, where a transaction around
// separate statements took four round trips while holding a pooled
// connection. The statement's conditional UPDATE decides who redeems the
// code (its row lock serialises concurrent redeemers, and a redeemer that
// waited re-checks used_at once the first commits), and its data-modifying
// CTEs insert the family and refresh token only for the row it consumed.
// If it consumed nothing, a read says why: a used code is ErrAlreadyUsed
// (checked before expiry, so replay is always reported); an expired code
// is ErrExpired and stays unused. Both return the code. A failed exchange
// still consumes the code.
func (s *Store) RedeemAuthCode(ctx context.Context, hash []byte, now time.Time, exchange func(*storage.AuthCode, *storage.User) (*storage.Redemption, error)) (*storage.AuthCode, func() error, error) {
	c, err := s.redeemAuthCode(ctx, hash, now, exchange)
	return c, nil, err // committed already
}

func (s *Store) redeemAuthCode(ctx context.Context, hash []byte, now time.Time, exchange func(*storage.AuthCode, *storage.User) (*storage.Redemption, error)) (*storage.AuthCode, error) {
	const op = "redeem auth code"
	now = micro(now)
	code, user, err := s.codeAndUser(ctx, hash, exchange != nil)
	if err != nil {
		return nil, wrap(op, err)
	}
	if err := unredeemable(code, now); err != nil {
		return code, wrap(op, err)
	}
	// The code as consuming it leaves it: codes change in nothing else.
	consumed := *code
	consumed.UsedAt = now
	var (
		red     *storage.Redemption
		exchErr error
	)
	if exchange != nil {
		arg := consumed
		if red, exchErr = exchange(&arg, user); exchErr == nil {
			exchErr = storage.CheckRedemption(&consumed, red)
		}
	}
	const consume = `UPDATE auth_codes SET used_at = $2 WHERE hash = $1 AND used_at IS NULL AND expires_at > $2`
	var tag pgconn.CommandTag
	switch {
	case exchErr != nil || red == nil:
		tag, err = s.pool.Exec(ctx, consume, hash, now)
	case red.Refresh == nil:
		f := red.Family
		tag, err = s.pool.Exec(ctx, `WITH used AS (`+consume+` RETURNING 1)
			INSERT INTO token_families (`+familyCols+`)
			SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM used`, hash, now,
			f.ID, f.ClientID, f.UserID, f.Scope, f.Context, tz(f.CreatedAt), tz(f.ExpiresAt), tz(f.RevokedAt),
			f.Reason, f.DPoPJKT, f.CertThumbprint, f.SessionHash)
	default:
		f, t := red.Family, red.Refresh
		tag, err = s.pool.Exec(ctx, `WITH used AS (`+consume+` RETURNING 1),
			family AS (INSERT INTO token_families (`+familyCols+`)
				SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM used RETURNING id)
			INSERT INTO refresh_tokens (`+refreshCols+`)
			SELECT $15, family.id, $16, $17, $18, $19, $20, $21, $22 FROM family`, hash, now,
			f.ID, f.ClientID, f.UserID, f.Scope, f.Context, tz(f.CreatedAt), tz(f.ExpiresAt), tz(f.RevokedAt),
			f.Reason, f.DPoPJKT, f.CertThumbprint, f.SessionHash,
			t.Hash, t.ClientID, t.UserID, t.Scope, tz(t.CreatedAt), tz(t.ExpiresAt), tz(t.UsedAt), t.SuccessorHash)
	}
	if err != nil {
		return code, wrap(op, err)
	}
	if tag.RowsAffected() == 0 {
		// Someone else consumed it (or it expired) since it was read.
		c, err := scanAuthCode(s.pool.QueryRow(ctx, `SELECT `+authCodeCols+` FROM auth_codes WHERE hash = $1`, hash))
		if err != nil {
			return nil, wrap(op, err)
		}
		if err := unredeemable(c, now); err != nil {
			return c, wrap(op, err)
		}
		return c, wrap(op, errInconsistent)
	}
	return &consumed, wrap(op, exchErr)
}

// codeAndUser reads the code and, with withUser, the user it was issued to
// in the same round trip; the user is nil when none has the code's UserID.
func (s *Store) codeAndUser(ctx context.Context, hash []byte, withUser bool) (*storage.AuthCode, *storage.User, error) {
	if !withUser {
		c, err := scanAuthCode(s.pool.QueryRow(ctx, `SELECT `+authCodeCols+` FROM auth_codes WHERE hash = $1`, hash))
		return c, nil, err
	}
	var (
		c storage.AuthCode
		u storage.OptionalUser
	)
	dest := append(authCodeDest(&c), u.Dest(func(p *time.Time) any { return ts(p) })...)
	err := s.pool.QueryRow(ctx, `SELECT `+qualified("c", authCodeCols)+`, `+storage.OptionalUserColumns("u")+`
		FROM auth_codes c LEFT JOIN users u ON u.id = c.user_id WHERE c.hash = $1`, hash).Scan(dest...)
	if err != nil {
		return nil, nil, err
	}
	return &c, u.User(), nil
}

// unredeemable says why c cannot be redeemed at now, if it cannot: used
// (checked first, so a replay is always reported as one) or expired.
func unredeemable(c *storage.AuthCode, now time.Time) error {
	switch {
	case !c.UsedAt.IsZero():
		return storage.ErrAlreadyUsed
	case expired(now, c.ExpiresAt):
		return storage.ErrExpired
	}
	return nil
}

// errInconsistent refuses a single-use value whose conditional update
// matched nothing although a re-read shows it usable (which row locking
// rules out); the caller fails closed.
var errInconsistent = errors.New("single-use record changed concurrently")
