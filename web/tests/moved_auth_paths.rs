//! The paths the `jwt` and `http` policies had in this crate before they moved to
//! `sidecast-auth` (decision 27) still name the same items, deprecated, for one release.
#![allow(deprecated)]

use std::any::TypeId;

/// Whether `A` and `B` are one type.
fn same<A: 'static, B: 'static>() -> bool {
    TypeId::of::<A>() == TypeId::of::<B>()
}

#[test]
fn old_paths_name_the_moved_policies() {
    assert!(same::<sidecast_web::JwtAuth, sidecast_web::auth::JwtAuth>());
    assert!(same::<
        sidecast_web::jwt::JwtAuth,
        sidecast_web::auth::jwt::JwtAuth,
    >());
    assert!(same::<sidecast_web::HttpAuth, sidecast_web::auth::HttpAuth>());
    assert!(same::<
        sidecast_web::http_auth::HttpAuth,
        sidecast_web::auth::http::HttpAuth,
    >());
    assert_eq!(
        sidecast_web::jwt::JWT_POLICY,
        sidecast_web::auth::JWT_POLICY
    );
    assert_eq!(
        sidecast_web::http_auth::HTTP_POLICY,
        sidecast_web::auth::HTTP_POLICY
    );
}
