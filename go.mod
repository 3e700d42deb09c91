module github.com/vmasync/vmasync

go 1.26
