"""Accounts: register, log in, refresh, log out, profile, deletion."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

import jwt
from fastapi import APIRouter, Depends, Request, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from db import addresses
from db.models import Role
from db.types import utcnow
from deployments.api import accounts
from deployments.api.accounts import TokenPair
from deployments.api.deps import (
    CurrentUser,
    SessionDep,
    SettingsDep,
    StorageDep,
    bearer,
    limit_login,
)
from deployments.api.problems import Unauthorized, problem_responses
from deployments.api.security import decode_token
from pipeline.fields import StrictInput
from pipeline.jobs import submission as jobs

router = APIRouter(prefix="/api/users", tags=["users"], responses=problem_responses(422, 429))

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _normal(email: str) -> str:
    try:
        return addresses.normalise(email)
    except addresses.AddressInvalid as error:
        raise ValueError(error.detail) from None


Email = Annotated[
    str,
    Field(
        max_length=320,
        pattern=EMAIL_PATTERN,
        examples=["ada@example.com"],
        description="Compared in its normal form (`db.addresses`): look-alike "
        "addresses are one account, and a part before @ that mixes scripts is refused.",
    ),
    AfterValidator(_normal),
]
NewPassword = Annotated[
    str, Field(min_length=8, max_length=128, description="8 to 128 characters.")
]
Password = Annotated[str, Field(min_length=1, max_length=128)]


class UserRegister(StrictInput):
    email: Email
    password: NewPassword
    full_name: str | None = Field(default=None, max_length=200)


class UserLogin(StrictInput):
    email: Email
    password: Password


class RefreshRequest(StrictInput):
    refresh_token: str = Field(max_length=4096)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    plan_code: str
    email_verified: bool
    created_at: datetime


class AccountDeletion(StrictInput):
    """The current password; an account without one (Google sign-in only) needs a login of
    the last few minutes instead."""

    password: Password | None = None


class UserUpdate(StrictInput):
    """The new profile. Changing the password needs the current one and ends every login."""

    full_name: str | None = Field(default=None, max_length=200)
    current_password: Password | None = None
    new_password: NewPassword | None = None

    @model_validator(mode="after")
    def _current_with_new(self) -> Self:
        if self.new_password is not None and self.current_password is None:
            raise ValueError("current_password is required to set new_password")
        return self


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409),
    summary="Create an account (and grant the plan's monthly credits)",
)
def register(body: UserRegister, session: SessionDep, settings: SettingsDep) -> UserPublic:
    user = accounts.register(session, body.email, body.password, body.full_name)
    jobs.on_user_registered(settings, user)
    return UserPublic.model_validate(user)


@router.post(
    "/login", responses=problem_responses(401, 429), summary="Log in: access + refresh token"
)
def login(
    body: UserLogin, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenPair:
    limit_login(request, body.email)
    return accounts.login(session, settings, body.email, body.password)


@router.post(
    "/refresh",
    responses=problem_responses(401),
    summary="Trade a refresh token for a new pair (each refresh token works once)",
)
def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    return accounts.refresh(session, settings, body.refresh_token)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401),
    summary="End the login a refresh token belongs to",
)
def logout(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> None:
    accounts.logout(session, settings, body.refresh_token)


@router.get("/profile", responses=problem_responses(401))
def read_profile(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.put("/profile", responses=problem_responses(401, 403))
def update_profile(body: UserUpdate, user: CurrentUser, session: SessionDep) -> UserPublic:
    user.full_name = body.full_name
    if body.new_password is not None and body.current_password is not None:
        accounts.change_password(session, user, body.current_password, body.new_password)
    user.updated_at = utcnow()
    session.add(user)
    session.commit()
    return UserPublic.model_validate(user)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 409),
    summary="Delete the account: projects, assets and logins go; credit history is anonymised",
)
def delete_me(
    body: AccountDeletion,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """409 while a job is queued or running: cancel it first, so its credits settle."""
    assert credentials is not None  # CurrentUser has checked it
    try:
        claims = decode_token(settings, credentials.credentials, "access")
    except jwt.InvalidTokenError:
        raise Unauthorized("invalid or expired access token") from None
    accounts.delete_account(
        session, settings, storage, user, body.password, accounts.auth_time_of(claims)
    )
