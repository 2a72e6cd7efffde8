package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// CreateLaunch inserts l; ErrConflict if its hash exists.
func (s *Store) CreateLaunch(ctx context.Context, l *storage.Launch) error {
	lc, err := jsonText(l.Context)
	if err != nil {
		return wrap("create launch", err)
	}
	_, err = s.wexec(ctx, nil, `INSERT INTO launches (hash, context, created_at, expires_at, used_at)
		VALUES (?, ?, ?, ?, ?)`, l.Hash, lc, micros(l.CreatedAt), micros(l.ExpiresAt), micros(l.UsedAt))
	return wrap("create launch", err)
}

// ConsumeLaunch marks the launch used in one conditional UPDATE (atomic
// under SQLite's write lock); if it matched nothing, a read says why:
// ErrNotFound, ErrAlreadyUsed (checked before expiry) or ErrExpired. On any
// error no launch is returned.
func (s *Store) ConsumeLaunch(ctx context.Context, hash []byte, now time.Time) (*storage.Launch, error) {
	const cols = `hash, context, created_at, expires_at, used_at`
	scan := func(sc scanner) (*storage.Launch, error) {
		var l storage.Launch
		err := sc.Scan(bs(&l.Hash), js(&l.Context), ts(&l.CreatedAt), ts(&l.ExpiresAt), ts(&l.UsedAt))
		return &l, err
	}
	l, err := scan(s.wrow(ctx, nil, `UPDATE launches SET used_at = ?1
		WHERE hash = ?2 AND used_at IS NULL AND expires_at > ?1 RETURNING `+cols, micros(now), hash))
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, wrap("consume launch", err)
	}
	l, err = scan(s.rrow(ctx, `SELECT `+cols+` FROM launches WHERE hash = ?`, hash))
	switch {
	case err != nil:
		return nil, wrap("consume launch", err)
	case !l.UsedAt.IsZero():
		return nil, wrap("consume launch", storage.ErrAlreadyUsed)
	case expired(now, l.ExpiresAt):
		return nil, wrap("consume launch", storage.ErrExpired)
	}
	return nil, wrap("consume launch", errInconsistent)
}

// errInconsistent refuses a single-use value whose conditional update
// matched nothing although a re-read shows it usable (which the write lock
// rules out); the caller fails closed.
var errInconsistent = errors.New("single-use record changed concurrently")

const authRequestCols = `id, client_id, redirect_uri, state, scope, nonce, code_challenge, audience,
	launch, user_id, patient, response_mode, created_at, expires_at, prompt, dpop_jkt, pushed`

func scanAuthRequest(sc scanner) (*storage.AuthRequest, error) {
	var r storage.AuthRequest
	if err := sc.Scan(&r.ID, &r.ClientID, &r.RedirectURI, &r.State, &r.Scope, &r.Nonce,
		&r.CodeChallenge, &r.Audience, js(&r.Launch), &r.UserID, &r.Patient, &r.ResponseMode,
		ts(&r.CreatedAt), ts(&r.ExpiresAt), &r.Prompt, &r.DPoPJKT, &r.Pushed); err != nil {
		return nil, err
	}
	return &r, nil
}

func authRequestArgs(r *storage.AuthRequest) ([]any, error) {
	var launch any
	if r.Launch != nil {
		v, err := jsonText(r.Launch)
		if err != nil {
			return nil, err
		}
		launch = v
	}
	return []any{r.ID, r.ClientID, r.RedirectURI, r.State, r.Scope, r.Nonce, r.CodeChallenge,
		r.Audience, launch, r.UserID, r.Patient, r.ResponseMode, micros(r.CreatedAt),
		micros(r.ExpiresAt), r.Prompt, r.DPoPJKT, r.Pushed}, nil
}

// CreateAuthRequest inserts r; ErrConflict if its id exists.
func (s *Store) CreateAuthRequest(ctx context.Context, r *storage.AuthRequest) error {
	args, err := authRequestArgs(r)
	if err != nil {
		return wrap("create auth request", err)
	}
	_, err = s.wexec(ctx, nil, `INSERT INTO auth_requests (`+authRequestCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
	return wrap("create auth request", err)
}

// GetAuthRequest returns the request; ErrExpired (and no request) if past ExpiresAt.
func (s *Store) GetAuthRequest(ctx context.Context, id string, now time.Time) (*storage.AuthRequest, error) {
	r, err := scanAuthRequest(s.r.QueryRowContext(ctx,
		`SELECT `+authRequestCols+` FROM auth_requests WHERE id = ?`, id))
	if err != nil {
		return nil, wrap("get auth request", err)
	}
	if expired(now, r.ExpiresAt) {
		return nil, wrap("get auth request", storage.ErrExpired)
	}
	return r, nil
}

// UpdateAuthRequest reads the request, applies update and writes it back in
// one write transaction. The id cannot change. An error from update aborts.
func (s *Store) UpdateAuthRequest(ctx context.Context, id string, update func(*storage.AuthRequest) error) (*storage.AuthRequest, error) {
	var out *storage.AuthRequest
	err := s.tx(ctx, "update auth request", func(tx *sql.Tx) error {
		r, err := scanAuthRequest(tx.QueryRowContext(ctx,
			`SELECT `+authRequestCols+` FROM auth_requests WHERE id = ?`, id))
		if err != nil {
			return err
		}
		if err := update(r); err != nil {
			return err
		}
		r.ID = id
		args, err := authRequestArgs(r)
		if err != nil {
			return err
		}
		if err := execOne(s.wexec(ctx, tx, `UPDATE auth_requests SET client_id = ?, redirect_uri = ?, state = ?,
			scope = ?, nonce = ?, code_challenge = ?, audience = ?, launch = ?, user_id = ?, patient = ?,
			response_mode = ?, created_at = ?, expires_at = ?, prompt = ?, dpop_jkt = ?, pushed = ?
			WHERE id = ?`, append(args[1:], id)...)); err != nil {
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
	_, err := s.wexec(ctx, nil, `DELETE FROM auth_requests WHERE id = ?`, id)
	return wrap("delete auth request", err)
}

const authCodeCols = `hash, client_id, redirect_uri, code_challenge, scope, user_id, nonce, auth_time,
	context, family_id, created_at, expires_at, used_at, dpop_jkt, session_hash, amr, acr`

// CreateAuthCode inserts c; ErrConflict if its hash exists.
func (s *Store) CreateAuthCode(ctx context.Context, c *storage.AuthCode) error {
	lc, err := jsonText(c.Context)
	if err != nil {
		return wrap("create auth code", err)
	}
	_, err = s.wexec(ctx, nil, `INSERT INTO auth_codes (`+authCodeCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Hash, c.ClientID, c.RedirectURI, c.CodeChallenge, c.Scope, c.UserID, c.Nonce,
		micros(c.AuthTime), lc, c.FamilyID, micros(c.CreatedAt), micros(c.ExpiresAt), micros(c.UsedAt),
		c.DPoPJKT, blob(c.SessionHash), c.AMR, c.ACR)
	return wrap("create auth code", err)
}

// ConsumeAuthCode marks the code used; see RedeemAuthCode.
func (s *Store) ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time) (*storage.AuthCode, error) {
	c, _, err := s.RedeemAuthCode(ctx, hash, now, nil)
	return c, err
}

// RedeemAuthCode marks the code used in one conditional UPDATE inside a
// write transaction (BEGIN IMMEDIATE, shared with concurrent redemptions:
// see writeBatcher), reads the code's user in the same transaction, then
// runs exchange and inserts its family and refresh token before committing.
// A successful redemption returns as the commit starts (txBatchedEarly), so
// the caller can sign its tokens meanwhile; durable waits for the commit.
// If the UPDATE matched nothing, a read in the same transaction says why: a
// used code is ErrAlreadyUsed (checked before expiry, so replay is always
// reported); an expired code is ErrExpired and stays unused. Both return
// the code.
func (s *Store) RedeemAuthCode(ctx context.Context, hash []byte, now time.Time, exchange func(*storage.AuthCode, *storage.User) (*storage.Redemption, error)) (*storage.AuthCode, func() error, error) {
	var code *storage.AuthCode
	body := func(ctx context.Context, tx *sql.Tx) error {
		c, err := scanAuthCode(s.wrow(ctx, tx, `UPDATE auth_codes SET used_at = ?1
			WHERE hash = ?2 AND used_at IS NULL AND expires_at > ?1 RETURNING `+authCodeCols, micros(now), hash))
		if errors.Is(err, sql.ErrNoRows) {
			// The UPDATE changed nothing: every outcome here is noWritesErr.
			if c, err = scanAuthCode(s.wrow(ctx, tx, `SELECT `+authCodeCols+` FROM auth_codes WHERE hash = ?`, hash)); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return noWritesErr{err}
				}
				return err
			}
			code = c
			switch {
			case !c.UsedAt.IsZero():
				return noWritesErr{storage.ErrAlreadyUsed}
			case expired(now, c.ExpiresAt):
				return noWritesErr{storage.ErrExpired}
			}
			return noWritesErr{errInconsistent}
		}
		if err != nil {
			return err
		}
		code = c
		if exchange == nil {
			return nil
		}
		user, err := scanUser(s.wrow(ctx, tx, `SELECT `+userCols+` FROM users WHERE id = ?`, c.UserID))
		if errors.Is(err, sql.ErrNoRows) {
			user, err = nil, nil
		}
		if err != nil {
			return err
		}
		r, err := exchange(c, user)
		if err != nil {
			return commitErr{err}
		}
		if err := storage.CheckRedemption(c, r); err != nil {
			return commitErr{err}
		}
		if err := s.insertFamily(ctx, tx, r.Family); err != nil {
			return err
		}
		if r.Refresh != nil {
			return s.insertRefresh(ctx, tx, r.Refresh)
		}
		return nil
	}
	if exchange == nil {
		err := s.txBatched(ctx, "consume auth code", body)
		return code, nil, err
	}
	durable, err := s.txBatchedEarly(ctx, "redeem auth code", body)
	return code, durable, err
}

func scanAuthCode(sc scanner) (*storage.AuthCode, error) {
	var c storage.AuthCode
	if err := sc.Scan(bs(&c.Hash), &c.ClientID, &c.RedirectURI, &c.CodeChallenge, &c.Scope, &c.UserID,
		&c.Nonce, ts(&c.AuthTime), js(&c.Context), &c.FamilyID, ts(&c.CreatedAt), ts(&c.ExpiresAt),
		ts(&c.UsedAt), &c.DPoPJKT, bs(&c.SessionHash), &c.AMR, &c.ACR); err != nil {
		return nil, err
	}
	return &c, nil
}
