
mod mongo;
